// forms.mjs: the login form (only when the daemon has API keys), the form that creates a run
// of any configured flow, and the JSON input field they and the enrich form share: a syntax
// error, or the daemon's 422 invalid_input message, is shown next to the field and announced.
import { h, fill, pre } from './dom.mjs';

/** A select of the configured flows (app.flows). */
export function flowSelect(app, id, selected) {
  const sel = h('select', { id, name: 'flow', required: true },
    app.flows.map((f) => h('option', { value: f.name }, f.name)));
  if (selected && app.flows.some((f) => f.name === selected)) sel.value = selected;
  return sel;
}

/** A labelled JSON textarea: .parse() is the value (null when empty) or undefined after
 * showing the syntax error; .error(text) shows a message from the daemon. */
export function jsonField(id, label, value) {
  const ta = h('textarea', { id, name: id, rows: 6, spellcheck: 'false', autocomplete: 'off',
    'aria-describedby': id + '-err' }, value || '');
  const err = h('p', { class: 'field-error', id: id + '-err', 'aria-live': 'assertive' });
  const el = h('div', { class: 'field' }, h('label', { for: id }, label), ta, err);
  const error = (text) => {
    fill(err, text || '');
    if (text) { ta.setAttribute('aria-invalid', 'true'); ta.focus(); } else ta.removeAttribute('aria-invalid');
  };
  ta.addEventListener('input', () => { if (ta.getAttribute('aria-invalid')) error(null); });
  return {
    el, ta, error,
    parse() {
      const s = ta.value.trim();
      if (!s) { error(null); return null; }
      try {
        const v = JSON.parse(s);
        error(null);
        return v;
      } catch (e) {
        error('Not valid JSON: ' + e.message);
        return undefined;
      }
    },
  };
}

export function loginView(main, message, onKey) {
  const input = h('input', { id: 'api-key', name: 'api-key', type: 'password', required: true,
    autocomplete: 'off', 'aria-describedby': 'api-key-help' });
  fill(main, h('h1', {}, 'Sign in'),
    h('form', { class: 'login', onsubmit: (e) => { e.preventDefault(); if (input.value.trim()) onKey(input.value.trim()); } },
      message ? h('p', { class: 'msg err', role: 'alert' }, message) : null,
      h('div', { class: 'field' }, h('label', { for: 'api-key' }, 'API key'), input,
        h('p', { class: 'muted small', id: 'api-key-help' },
          'This runsd needs an API key. It is kept in this tab only (session storage) and sent with each request.')),
      h('button', { type: 'submit', class: 'primary' }, 'Sign in')));
  input.focus();
}

export function newRunView(app, main, preset) {
  const sel = flowSelect(app, 'new-flow', preset);
  const about = h('div', { class: 'flow-about' });
  const input = jsonField('new-input', 'Input (JSON)', '{}');
  const limit = h('input', { id: 'new-limit', type: 'number', min: 1, class: 'short', 'aria-describedby': 'new-limit-err' });
  const limitErr = h('p', { class: 'field-error', id: 'new-limit-err' });
  const preview = h('input', { id: 'new-preview', type: 'checkbox' });
  const flowErr = h('p', { class: 'field-error', id: 'new-flow-err' });
  const formErr = h('p', { class: 'msg err', role: 'alert' });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Create run');
  sel.setAttribute('aria-describedby', 'new-flow-about new-flow-err');

  const describe = () => {
    const f = app.flows.find((x) => x.name === sel.value);
    fill(about, f && f.description ? h('p', { class: 'muted', id: 'new-flow-about' }, f.description) : null,
      f && f.input_schema ? h('details', {}, h('summary', {}, 'Accepted input (schema)'), pre(f.input_schema)) : null);
  };
  sel.addEventListener('change', describe);
  describe();

  async function create(e) {
    e.preventDefault();
    fill(formErr); fill(flowErr); fill(limitErr);
    const value = input.parse();
    if (value === undefined) return;
    const body = { flow: sel.value };
    if (value !== null) body.input = value;
    if (limit.value) body.limit = Number(limit.value);
    if (preview.checked) body.preview = true;
    submit.disabled = true;
    try {
      const run = await app.rd.createRun(body);
      location.hash = '#/runs/' + run.id;
    } catch (err) {
      if (err.status === 401) return app.unauthorized();
      if (['invalid_input', 'invalid_field'].includes(err.code)) input.error(err.message);
      else if (['unknown_flow', 'invalid_flow'].includes(err.code)) fill(flowErr, err.message);
      else if (['invalid_limit', 'limit_too_large'].includes(err.code)) fill(limitErr, err.message);
      else fill(formErr, err.message);
    } finally {
      submit.disabled = false;
    }
  }

  fill(main, h('h1', {}, 'New run'),
    app.flows.length === 0 ? h('p', { class: 'muted' }, 'No flow is configured.') :
      h('form', { class: 'newrun', onsubmit: create, novalidate: true },
        h('div', { class: 'field' }, h('label', { for: 'new-flow' }, 'Flow'), sel, flowErr), about,
        input.el,
        h('div', { class: 'field' }, h('label', { for: 'new-limit' }, 'Limit (items, optional)'), limit, limitErr),
        h('div', { class: 'field check' }, preview, h('label', { for: 'new-preview' }, 'Preview (a short trial run)')),
        formErr, submit));
  return { dispose() {} };
}
