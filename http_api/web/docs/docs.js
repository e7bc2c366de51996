// /api/docs: Swagger UI over /api/openapi.json, and the WebSocket protocol read from
// /api/asyncapi.json and shown as channels, messages and their fields. A file rather than an
// inline script, so the page runs under a CSP with script-src 'self'.
'use strict';

(function () {
  const OPENAPI_URL = '/api/openapi.json';
  const ASYNCAPI_URL = '/api/asyncapi.json';

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  // Text with `code` spans, as the documents' descriptions are written.
  function prose(text) {
    const out = document.createDocumentFragment();
    String(text || '').split(/(`[^`]+`)/).forEach((part) => {
      if (part.startsWith('`') && part.endsWith('`') && part.length > 1) {
        out.append(el('code', {}, part.slice(1, -1)));
      } else if (part) {
        out.append(part);
      }
    });
    return out;
  }

  function startSwagger() {
    const target = document.getElementById('swagger-ui');
    if (typeof window.SwaggerUIBundle !== 'function') {
      target.replaceChildren(el('p', { class: 'docs-error' }, 'Swagger UI did not load; the raw document is at ', el('a', { href: OPENAPI_URL }, OPENAPI_URL), '.'));
      return;
    }
    window.ui = window.SwaggerUIBundle({
      url: OPENAPI_URL,
      dom_id: '#swagger-ui',
      deepLinking: true,
      presets: [window.SwaggerUIBundle.presets.apis],
      layout: 'BaseLayout',
      docExpansion: 'none',
      defaultModelsExpandDepth: 0,
      tryItOutEnabled: false,
      persistAuthorization: false,
    });
  }

  // --- AsyncAPI ---------------------------------------------------------------------------

  function resolve(doc, ref) {
    return ref.replace(/^#\//, '').split('/').reduce((node, key) => (node ? node[key] : undefined), doc);
  }

  function refName(ref) {
    return ref.split('/').pop();
  }

  function typeOf(schema) {
    if (!schema) return 'any';
    if (schema.$ref) return refName(schema.$ref);
    if (schema.const !== undefined) return JSON.stringify(schema.const);
    if (schema.enum) return schema.enum.map((v) => JSON.stringify(v)).join(' | ');
    if (schema.anyOf) return schema.anyOf.map(typeOf).join(' | ');
    if (schema.type === 'array') return typeOf(schema.items) + '[]';
    if (schema.type === 'object' && schema.additionalProperties && schema.additionalProperties !== true) {
      return '{string: ' + typeOf(schema.additionalProperties) + '}';
    }
    return schema.type || 'any';
  }

  function limits(schema) {
    const said = [];
    const s = schema.anyOf ? schema.anyOf.find((x) => x.type && x.type !== 'null') || schema : schema;
    if (s.minLength !== undefined) said.push('at least ' + s.minLength + ' chars');
    if (s.maxLength !== undefined) said.push(s.type === 'array' ? 'at most ' + s.maxLength + ' items' : 'at most ' + s.maxLength + ' chars');
    if (s.minimum !== undefined) said.push('>= ' + s.minimum);
    if (s.maximum !== undefined) said.push('<= ' + s.maximum);
    return said.join(', ');
  }

  // Rows for a schema's fields; fields that are objects of their own are listed under them.
  function fieldRows(doc, schema, prefix, depth, rows) {
    const required = new Set(schema.required || []);
    for (const [name, field] of Object.entries(schema.properties || {})) {
      const about = [field.description, limits(field)].filter(Boolean).join('; ');
      rows.push(el('tr', {}, el('td', {}, prefix + name), el('td', {}, typeOf(field)), el('td', {}, required.has(name) ? 'yes' : ''), el('td', {}, prose(about))));
      const nested = field.$ref ? resolve(doc, field.$ref) : null;
      if (nested && nested.properties && depth < 1) fieldRows(doc, nested, prefix + name + '.', depth + 1, rows);
    }
    return rows;
  }

  function messageBlock(doc, name, message, sent, replies) {
    const payload = message.payload && message.payload.$ref ? resolve(doc, message.payload.$ref) : message.payload || {};
    const rows = fieldRows(doc, payload, '', 0, []);
    const direction = sent ? el('span', { class: 'ws-dir send' }, 'client → server') : el('span', { class: 'ws-dir receive' }, 'server → client');
    return el('div', { class: 'ws-message', id: 'ws-' + name },
      el('h4', {}, direction, el('code', {}, name)),
      el('p', {}, prose(message.summary || '')),
      replies ? el('p', {}, 'Reply: ', prose(replies.map((r) => '`' + r + '`').join(' or '))) : null,
      el('table', { class: 'ws-fields' },
        el('thead', {}, el('tr', {}, el('th', {}, 'field'), el('th', {}, 'type'), el('th', {}, 'required'), el('th', {}, 'meaning'))),
        el('tbody', {}, ...rows)));
  }

  function renderAsyncApi(doc) {
    const target = document.getElementById('asyncapi');
    const sent = new Set();
    const replies = {};
    for (const op of Object.values(doc.operations || {})) {
      if (op.action !== 'send') continue;
      for (const m of op.messages || []) {
        const name = refName(m.$ref);
        sent.add(name);
        if (op.reply) replies[name] = (op.reply.messages || []).map((r) => refName(r.$ref));
      }
    }
    const server = Object.values(doc.servers || {})[0];
    const parts = [
      el('p', { class: 'ws-intro' }, prose(doc.info.description)),
      server ? el('p', { class: 'ws-intro' }, 'Connect to ', el('code', {}, server.protocol + '://' + server.host + server.pathname), '. Authenticate with ', el('code', {}, 'Authorization: Bearer'), ' on the upgrade, ', el('code', {}, '?ticket='), ' from ', el('code', {}, 'POST /api/ws/ticket'), ', or an ', el('code', {}, 'auth'), ' message.') : null,
    ];
    for (const [key, channel] of Object.entries(doc.channels || {})) {
      const title = channel.address ? el('code', {}, channel.address) : 'The socket: commands, replies and control messages';
      const messages = Object.entries(channel.messages || {}).map(([name, ref]) =>
        messageBlock(doc, name, ref.$ref ? resolve(doc, ref.$ref) : ref, sent.has(name) && !channel.address, channel.address ? null : replies[name]));
      parts.push(el('section', { class: 'ws-channel', id: 'channel-' + key }, el('h3', {}, title), el('p', {}, prose(channel.description)), ...messages));
    }
    target.replaceChildren(...parts.filter(Boolean));
  }

  function loadAsyncApi() {
    fetch(ASYNCAPI_URL, { headers: { Accept: 'application/json' } })
      .then((response) => {
        if (!response.ok) throw new Error('HTTP ' + response.status);
        return response.json();
      })
      .then(renderAsyncApi)
      .catch((error) => {
        document.getElementById('asyncapi').replaceChildren(el('p', { class: 'docs-error' }, 'Could not load ', el('a', { href: ASYNCAPI_URL }, ASYNCAPI_URL), ': ' + error.message));
      });
  }

  startSwagger();
  loadAsyncApi();
})();
