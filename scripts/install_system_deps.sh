#!/usr/bin/env bash
# System packages graphnn's renderers and their tests use (Debian, as root).
# Idempotent: installs only what is missing.
set -euo pipefail
# texlive-latex-recommended + texlive-pictures: Beamer (graphnn derive --format beamer);
# texlive-fonts-recommended: the fonts those decks use
PACKAGES="graphviz texlive-latex-base texlive-latex-recommended texlive-pictures texlive-fonts-recommended poppler-utils chromium"
missing=""
for p in $PACKAGES; do
  dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends $missing
fi
