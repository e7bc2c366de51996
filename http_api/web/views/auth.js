// Sign in (#/login) and sign up (#/register).

import * as api from '../api.js';
import { h, field, showFormError } from '../ui.js';

function goNext(query) {
  const next = query.get('next');
  location.hash = next && next.startsWith('/') ? `#${next}` : '#/';
}

async function withoutReroute(fn) {
  document.body.dataset.keepRoute = '1';
  try { return await fn(); } finally { delete document.body.dataset.keepRoute; }
}

export function render(root, { mode, query }) {
  if (api.isSignedIn() && query.get('next')) { goNext(query); return null; }
  const next = query.get('next');
  const suffix = next ? `?next=${encodeURIComponent(next)}` : '';
  if (mode === 'register') {
    const error = h('p', { class: 'form-error', testid: 'register-error', role: 'alert', hidden: true });
    const submit = h('button', { type: 'submit', class: 'btn btn-primary', testid: 'register-submit' }, 'Create account');
    const form = h('form', { id: 'register-form', class: 'card form', testid: 'register-form', novalidate: true },
      h('h1', null, 'Create your account'),
      error,
      field('Username', h('input', { name: 'username', testid: 'register-username', autocomplete: 'username', required: true, maxlength: 30 }), '3-30 letters, digits or underscores'),
      field('Email', h('input', { name: 'email', type: 'email', testid: 'register-email', autocomplete: 'email', required: true })),
      field('Display name (optional)', h('input', { name: 'display_name', testid: 'register-display-name', autocomplete: 'nickname', maxlength: 200 })),
      field('Password', h('input', { name: 'password', type: 'password', testid: 'register-password', autocomplete: 'new-password', required: true }), 'At least 8 characters, with an uppercase letter and a number'),
      submit,
      h('p', { class: 'muted' }, 'Already have an account? ', h('a', { href: `#/login${suffix}`, testid: 'go-login' }, 'Sign in')));
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      submit.disabled = true;
      showFormError(form, error, null);
      const data = Object.fromEntries(new FormData(form));
      try {
        await withoutReroute(() => api.register(data));
        goNext(query);
      } catch (err) {
        showFormError(form, error, err);
      } finally {
        submit.disabled = false;
      }
    });
    root.append(h('section', { class: 'auth-page' }, form));
    form.querySelector('input').focus();
    return null;
  }

  const error = h('p', { class: 'form-error', testid: 'login-error', role: 'alert', hidden: true });
  const submit = h('button', { type: 'submit', class: 'btn btn-primary', testid: 'login-submit' }, 'Sign in');
  const form = h('form', { id: 'login-form', class: 'card form', testid: 'login-form', novalidate: true },
    h('h1', null, 'Sign in'),
    error,
    field('Username or email', h('input', { name: 'login', testid: 'login-identifier', autocomplete: 'username', required: true })),
    field('Password', h('input', { name: 'password', type: 'password', testid: 'login-password', autocomplete: 'current-password', required: true })),
    submit,
    h('p', { class: 'muted' }, 'New here? ', h('a', { href: `#/register${suffix}`, testid: 'go-register' }, 'Create an account')));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    submit.disabled = true;
    showFormError(form, error, null);
    const data = new FormData(form);
    try {
      await withoutReroute(() => api.login(String(data.get('login') || '').trim(), String(data.get('password') || '')));
      goNext(query);
    } catch (err) {
      showFormError(form, error, err);
    } finally {
      submit.disabled = false;
    }
  });
  root.append(h('section', { class: 'auth-page' }, form));
  form.querySelector('input').focus();
  return null;
}
