#!/usr/bin/env bash
# Re-pins the base images of deploy/docker/*Dockerfile*: for each
# "ARG <NAME>_IMAGE=<repo>:<tag>@sha256:<digest>" line it asks the registry
# for the current digest of <repo>:<tag> (the multi-platform index) and
# rewrites the digest. Review the diff and rebuild before committing.
#
# usage: deploy/pin-images.sh [--check]
#   --check  change nothing; exit 1 when a pinned digest is not the tag's
#            current one (for a scheduled job).
# Needs network access to the registries and one of: crane
# (github.com/google/go-containerregistry/cmd/crane), docker buildx, skopeo.
set -euo pipefail
cd "$(dirname "$0")/.."
check=0
[[ ${1:-} == --check ]] && check=1

digest_of() { # <repo>:<tag> -> sha256:...
	local ref=$1
	if command -v crane >/dev/null 2>&1; then
		crane digest "$ref"
	elif command -v docker >/dev/null 2>&1 && docker buildx version >/dev/null 2>&1; then
		docker buildx imagetools inspect "$ref" --format '{{json .Manifest}}' | sed -nE 's/.*"digest":"(sha256:[0-9a-f]{64})".*/\1/p' | head -1
	elif command -v skopeo >/dev/null 2>&1; then
		skopeo inspect --raw "docker://$ref" | sha256sum | sed -E 's/^([0-9a-f]{64}).*/sha256:\1/'
	else
		echo "pin-images: need crane, docker buildx or skopeo" >&2
		return 1
	fi
}

stale=0
for dockerfile in deploy/docker/*Dockerfile*; do
	while IFS= read -r line; do
		name=${line%%=*}
		ref=${line#*=}
		image=${ref%@*}
		old=${ref#*@}
		new=$(digest_of "$image")
		if [[ ! $new =~ ^sha256:[0-9a-f]{64}$ ]]; then
			echo "pin-images: no digest for $image (got '$new')" >&2
			exit 1
		fi
		if [[ $new == "$old" ]]; then
			echo "ok      $image@$old"
			continue
		fi
		stale=1
		echo "update  $image: $old -> $new"
		if ((!check)); then
			sed -i "s#^${name}=${image}@${old}\$#${name}=${image}@${new}#" "$dockerfile"
		fi
	done < <(sed -nE 's/^ARG ([A-Z_]+_IMAGE=[^@[:space:]]+@sha256:[0-9a-f]{64})[[:space:]]*$/\1/p' "$dockerfile" | sed 's/^/ARG /')
done
if ((check && stale)); then
	exit 1
fi
