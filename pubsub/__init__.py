"""The event bus on Redis: key and channel names, publish, subscribe, history, presence."""
