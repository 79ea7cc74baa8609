#!/bin/sh
# Installs the mcp-oidc-proxy single binary for this machine (Linux or macOS, x64 or arm64).
#
#   curl -fsSL https://github.com/OWNER/mcp-oidc-proxy/releases/latest/download/install.sh | sh
#
# Downloads mcp-oidc-proxy-<os>-<arch> and SHA256SUMS from the release, refuses to install on a
# checksum mismatch, and installs to ${PREFIX:-/usr/local}/bin/mcp-oidc-proxy.
#
# Environment:
#   MCP_OIDC_PROXY_BASE_URL  where the release files are (default: the latest GitHub release;
#                            https:// or file:// only)
#   PREFIX                   install prefix (default /usr/local; the binary goes to $PREFIX/bin)
set -eu

# PLACEHOLDER: replace OWNER with the GitHub owner the project is published under.
DEFAULT_BASE_URL="https://github.com/OWNER/mcp-oidc-proxy/releases/latest/download"
BASE_URL="${MCP_OIDC_PROXY_BASE_URL:-$DEFAULT_BASE_URL}"
BASE_URL="${BASE_URL%/}"
PREFIX="${PREFIX:-/usr/local}"
BIN_DIR="$PREFIX/bin"
NAME="mcp-oidc-proxy"

fail() {
  printf 'install.sh: %s\n' "$*" >&2
  exit 1
}

case "$(uname -s)" in
  Linux) os=linux ;;
  Darwin) os=darwin ;;
  *) fail "unsupported operating system: $(uname -s) (supported: Linux, macOS)" ;;
esac
case "$(uname -m)" in
  x86_64 | amd64) arch=x64 ;;
  aarch64 | arm64) arch=arm64 ;;
  *) fail "unsupported architecture: $(uname -m) (supported: x86_64, arm64)" ;;
esac
command -v curl >/dev/null 2>&1 || fail "curl is required"
if command -v sha256sum >/dev/null 2>&1; then
  sha256() { sha256sum "$1" | cut -d ' ' -f 1; }
elif command -v shasum >/dev/null 2>&1; then
  sha256() { shasum -a 256 "$1" | cut -d ' ' -f 1; }
else
  fail "sha256sum or shasum is required to verify the download"
fi

tmp="$(mktemp -d 2>/dev/null || mktemp -d -t mcp-oidc-proxy)"
trap 'rm -rf "$tmp"' EXIT INT TERM

download() {
  curl -fsSL --proto '=https,file' -o "$tmp/$1" "$BASE_URL/$1" || fail "could not download $BASE_URL/$1"
}
# A SHA256SUMS line: "<hex>  <file>" (or "<hex> *<file>" in binary mode).
checksum_of() {
  awk -v f="$1" '$2 == f || $2 == "*" f { print $1; exit }' "$tmp/SHA256SUMS"
}

download SHA256SUMS
asset="$NAME-$os-$arch"
expected="$(checksum_of "$asset")"
if [ -z "$expected" ] && [ "$os" = darwin ] && [ "$arch" = arm64 ]; then
  # No macOS arm64 build in the release: the x64 one runs under Rosetta 2.
  asset="$NAME-darwin-x64"
  expected="$(checksum_of "$asset")"
  [ -z "$expected" ] || printf 'No macOS arm64 build in this release: installing %s (runs under Rosetta 2)\n' "$asset"
fi
[ -n "$expected" ] || fail "SHA256SUMS has no entry for $NAME-$os-$arch: this release has no build for this platform"

printf 'Downloading %s from %s\n' "$asset" "$BASE_URL"
download "$asset"
actual="$(sha256 "$tmp/$asset")"
if [ "$actual" != "$expected" ]; then
  fail "checksum mismatch for $asset: expected $expected, got $actual; nothing installed"
fi
chmod 755 "$tmp/$asset"
if [ "$os" = darwin ]; then
  # Injecting the application into Node's binary voids Apple's signature; macOS refuses to run
  # a binary whose signature is broken, so sign it again, ad hoc, on this machine.
  codesign --sign - --force "$tmp/$asset" >/dev/null 2>&1 ||
    fail "could not re-sign $asset with codesign (install the Xcode command line tools: xcode-select --install)"
fi

mkdir -p "$BIN_DIR" || fail "cannot create $BIN_DIR (try PREFIX=\$HOME/.local or run as root)"
# Copy next to the target, then rename: a running binary is never overwritten in place.
cp "$tmp/$asset" "$BIN_DIR/.$NAME.new" || fail "cannot write to $BIN_DIR (try PREFIX=\$HOME/.local or run as root)"
mv -f "$BIN_DIR/.$NAME.new" "$BIN_DIR/$NAME"
printf 'Installed %s\n' "$BIN_DIR/$NAME"
"$BIN_DIR/$NAME" --version 2>/dev/null || true
