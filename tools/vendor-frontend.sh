#!/usr/bin/env bash
# Vendors the console's front-end files from the npm registry into gateway/console/static/vendor/.
# Nothing is fetched at install or run time: run this by hand to upgrade, review the diff, commit.
#   tools/vendor-frontend.sh [nhsuk-frontend version] [htmx.org version]
# Two edits to the NHS.UK stylesheet, because the console must work with no internet:
#   - its icon urls are absolute (/assets/images/...): made relative to the stylesheet's folder;
#   - its @font-face rules load Frutiger from assets.nhs.uk: removed, so the stylesheet's own
#     fallback (Arial, sans-serif) is used and the Content-Security-Policy stays 'self'-only.
set -euo pipefail
NHSUK="${1:-10.6.1}"
HTMX="${2:-2.0.11}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT="$ROOT/gateway/console/static/vendor"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
npm pack --silent "nhsuk-frontend@$NHSUK" "htmx.org@$HTMX" >/dev/null
mkdir nhsuk htmx
tar xzf "nhsuk-frontend-$NHSUK.tgz" -C nhsuk
tar xzf "htmx.org-$HTMX.tgz" -C htmx
rm -rf "$OUT/nhsuk-frontend" "$OUT/htmx"
mkdir -p "$OUT/nhsuk-frontend/assets/images" "$OUT/htmx"
DIST=nhsuk/package/dist/nhsuk
sed -e 's#url(/assets/images/#url(assets/images/#g' \
    -e 's#@font-face{[^}]*assets\.nhs\.uk[^}]*}##g' \
    "$DIST/nhsuk-frontend.min.css" | sed -e 's#/\*\# sourceMappingURL=[^*]*\*/##; s#//\# sourceMappingURL=.*$##' >"$OUT/nhsuk-frontend/nhsuk-frontend.min.css"
sed -e 's#//\# sourceMappingURL=.*$##' "$DIST/nhsuk-frontend.min.js" >"$OUT/nhsuk-frontend/nhsuk-frontend.min.js"
cp "$DIST"/assets/images/*.svg "$DIST"/assets/images/favicon.ico "$OUT/nhsuk-frontend/assets/images/"
# The npm package carries no licence file; its package.json says MIT and its README's "Licence" section:
{
  echo "nhsuk-frontend $NHSUK (npm package nhsuk-frontend; https://github.com/nhsuk/nhsuk-frontend)"
  echo "package.json: \"license\": \"$(python3 -c 'import json,sys;print(json.load(open(sys.argv[1]))["license"])' nhsuk/package/package.json)\""
  echo
  awk '/^## Licence/{on=1} on&&/^## /&&!/^## Licence/{exit} on' nhsuk/package/README.md
  echo
  cat "$ROOT/tools/MIT-LICENSE-nhsuk-frontend.txt"
} >"$OUT/nhsuk-frontend/LICENSE.txt"
cp htmx/package/dist/htmx.min.js "$OUT/htmx/htmx.min.js"
cp htmx/package/LICENSE "$OUT/htmx/LICENSE.txt"
echo "vendored nhsuk-frontend $NHSUK and htmx.org $HTMX into $OUT"
