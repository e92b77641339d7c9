#!/usr/bin/env bash
# The upstream page's curl + jq boot check ("A boot-time sanity check"), verbatim but for the
# base URL, which comes from LAYERS_API_URL so that the benchmark can point it at the emulator.
set -euo pipefail

response=$(curl -sS -w "\n%{http_code}" \
  "${LAYERS_API_URL:-https://api.layers.com}/v1/whoami" \
  -H "X-Api-Key: $LAYERS_API_KEY")

body=$(echo "$response" | sed '$d')
status=$(echo "$response" | tail -n1)

if [ "$status" != "200" ]; then
  echo "whoami failed: HTTP $status"
  echo "$body"
  exit 1
fi

if echo "$body" | jq -e '.killSwitch == true or .apiAccessRevoked == true' > /dev/null; then
  echo "access revoked or kill switch engaged — refusing to start"
  exit 1
fi

echo "key healthy: $(echo "$body" | jq -r '.organizationId')"
