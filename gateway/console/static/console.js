// Starts the NHS.UK components (header menu, error summary focus, buttons). A module script, not an
// inline one, so the Content-Security-Policy can stay script-src 'self'.
import { initAll } from './vendor/nhsuk-frontend/nhsuk-frontend.min.js'

document.body.classList.add('js-enabled')
if ('noModule' in HTMLScriptElement.prototype) {
  document.body.classList.add('nhsuk-frontend-supported')
}
initAll()
