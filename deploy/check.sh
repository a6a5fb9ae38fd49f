#!/usr/bin/env bash
# Checks the deployment files without Docker or a cluster:
#   1. every YAML file parses (compose, k8s); every k8s document has
#      apiVersion and kind; every k8s/base/*.yaml is listed in the
#      kustomization (secret.example.yaml excepted);
#   2. kustomize renders k8s/base and each overlay (with .tools/bin/kustomize,
#      the version scripts/deps.sh pins, else `kustomize` or `kubectl
#      kustomize`) and
#      deploy/kubecheck validates every rendered object strictly against
#      its Kubernetes API type (unknown, misspelt or duplicate fields and
#      unknown kinds are errors; the CRD kinds too: ServiceMonitor,
#      PrometheusRule, Certificate, Issuer, ...) and checks the objects
#      fit together: named and numbered ports (probes, Service targetPorts,
#      NetworkPolicies, Ingress backends, ServiceMonitor endpoints) exist,
#      every selector selects something, every HPA scales something, every
#      Secret, ConfigMap (and key) a pod uses is rendered or listed in
#      deploy/README.md's Secrets table; the Helm chart's renders (6.)
#      are checked the same way;
#   3. every SERVICE of deploy/docker/Dockerfile has <module>/go.mod, is in
#      go.work and has <module>/cmd/<SERVICE>; every SERVICE/image that compose
#      and k8s ask for is one of them, named ghcr.io/parleychat/<SERVICE>;
#      the Dockerfile's base images are pinned by digest;
#   4. every PARLEY_* variable set in docker-compose.yml, k8s/ (as written and
#      as rendered), the Dockerfile and deploy/README.md is a flag of the binary
#      it is given to (-nats-url <=> PARLEY_NATS_URL). Flags are read from the
#      Go sources of the repository's packages the binary links (go list -deps
#      ./cmd/<SERVICE>), so a library's flags count only where it is linked:
#      -minio-* (libs/objstore) for gateway, file and parleyd, not for auth;
#      with --build, also from the built binary's -h;
#   5. in compose and in each kustomize build, the gateways and the file
#      service name the same object store (every PARLEY_STORAGE_DIR and
#      PARLEY_MINIO_* variable with the same value or Secret key) and the
#      gateway's PARLEY_MAX_UPLOAD_SIZE equals the file service's
#      PARLEY_FILE_MAX_SIZE;
#   6. (run between 2.'s render and its validation) the Helm chart
#      (deploy/helm/parley) renders the same objects as kustomize: its
#      defaults as k8s/base, ci/production-values.yaml as
#      k8s/overlays/production (deploy/helmcheck, with the helm library: no
#      helm binary needed).
#
# usage: deploy/check.sh [--build]
#   --build  also build every binary the way the Dockerfile does
#            (CGO_ENABLED=0 -trimpath) and check against its -h output.
# Needs: go, perl, kustomize (scripts/deps.sh) or kubectl. Exit status 1
# lists every problem found; the last line says how long it took.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

build=0
for arg in "$@"; do
	case "$arg" in
	--build) build=1 ;;
	-h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) echo "unknown argument: $arg" >&2; exit 2 ;;
	esac
done

started=$(date +%s%N)
tmp=$(mktemp -d)
elapsed() { echo "deploy/check.sh took $(( ($(date +%s%N) - started) / 1000000 )) ms"; }
trap 'rm -rf "$tmp"; elapsed' EXIT

failures=0
section() {
	local ds=$((($(date +%s%N) - started) / 100000000))
	printf '\n== %s  (at %d.%d s)\n' "$*" $((ds / 10)) $((ds % 10))
}
problem() { printf 'FAIL: %s\n' "$*"; failures=$((failures + 1)); }
note() { printf '  %s\n' "$*"; }

dockerfile=deploy/docker/Dockerfile
compose=docker-compose.yml

# --- tools -------------------------------------------------------------------
# Both live in their own modules outside go.work (GOWORK=off): building them
# never touches the services' dependencies.
section "tools"
(cd deploy/yamlcheck && GOWORK=off go build -o "$tmp/yamlcheck" .)
if (cd deploy/yamlcheck && GOWORK=off go vet . && GOWORK=off go test -count=1 . >"$tmp/yamlcheck-test.out" 2>&1); then
	note "built and tested deploy/yamlcheck"
else
	cat "$tmp/yamlcheck-test.out"
	problem "deploy/yamlcheck's own tests fail"
fi
if (cd deploy/healthcheck && GOWORK=off go vet . && GOWORK=off CGO_ENABLED=0 go build -trimpath -o "$tmp/healthcheck" .); then
	note "built deploy/healthcheck (the image's HEALTHCHECK prober)"
else
	problem "deploy/healthcheck does not build"
fi
# kubecheck links k8s.io/api and the CRD types: its first build takes
# about a minute, later ones come from the Go build cache (scripts/deps.sh
# builds it once). Its tests run when its sources change (go test's cache).
if (cd deploy/kubecheck && GOWORK=off go build -o "$tmp/kubecheck" . && GOWORK=off go vet . && GOWORK=off go test . >"$tmp/kubecheck-test.out" 2>&1); then
	note "built and tested deploy/kubecheck"
else
	cat "$tmp/kubecheck-test.out" 2>/dev/null || true
	problem "deploy/kubecheck does not build or its tests fail"
fi
yamlcheck="$tmp/yamlcheck"
kubecheck="$tmp/kubecheck"

# --- 1. YAML -----------------------------------------------------------------
section "YAML syntax"
mapfile -t k8s_files < <(find k8s -type f \( -name '*.yaml' -o -name '*.yml' \) | sort)
# Helm templates (deploy/helm/*/templates, helmcheck's test chart) are Go
# templates, not YAML: section "Helm chart against kustomize" renders them.
mapfile -t other_yaml < <(find deploy -path '*/testdata' -prune -o -path '*/templates' -prune -o -type f \( -name '*.yaml' -o -name '*.yml' \) -print | sort)
if ! "$yamlcheck" parse "$compose" "${other_yaml[@]}"; then
	problem "YAML does not parse (above)"
fi
# kustomization.yaml is a Kubernetes-style document too (apiVersion, kind).
if ! "$yamlcheck" parse -k8s "${k8s_files[@]}"; then
	problem "k8s YAML does not parse or lacks apiVersion/kind (above)"
fi

section "kustomization resources"
for f in k8s/base/*.yaml; do
	name=$(basename "$f")
	case "$name" in
	kustomization.yaml | *.example.yaml) continue ;;
	esac
	if ! grep -qE "^[[:space:]]*-[[:space:]]*${name//./\\.}[[:space:]]*$" k8s/base/kustomization.yaml; then
		problem "k8s/base/$name is not listed in k8s/base/kustomization.yaml resources"
	fi
done
if grep -qE 'secret\.example\.yaml' <(grep -vE '^[[:space:]]*#' k8s/base/kustomization.yaml); then
	problem "secret.example.yaml must not be a kustomize resource (placeholder secrets)"
fi
note "checked"

# --- 2. kustomize ------------------------------------------------------------
section "kustomize build"
rendered=()
declare -A rendered_from=() # rendered file -> the kustomization directory
kustomize_cmd=()
# scripts/deps.sh's pinned kustomize first: kustomize releases render some
# fields differently (labels on volumeClaimTemplates, for one).
if [[ -x .tools/bin/kustomize ]]; then
	kustomize_cmd=(.tools/bin/kustomize build)
elif command -v kustomize >/dev/null 2>&1; then
	kustomize_cmd=(kustomize build)
elif command -v kubectl >/dev/null 2>&1 && kubectl kustomize --help >/dev/null 2>&1; then
	kustomize_cmd=(kubectl kustomize)
fi
if ((${#kustomize_cmd[@]} == 0)); then
	problem "neither kustomize nor kubectl is installed: the manifests cannot be rendered (scripts/deps.sh installs kustomize into .tools/bin)"
else
	if [[ ${kustomize_cmd[0]} == kubectl ]]; then
		kversion=$(kubectl version --client 2>/dev/null | sed -nE 's/^Kustomize Version: (.*)/\1/p')
	else
		kversion=$("${kustomize_cmd[0]}" version 2>/dev/null | head -1)
	fi
	note "with ${kustomize_cmd[*]} (kustomize ${kversion:-of unknown version})"
	for dir in k8s/base k8s/overlays/*/; do
		dir=${dir%/}
		out="$tmp/rendered-$(echo "$dir" | tr / -).yaml"
		if "${kustomize_cmd[@]}" "$dir" >"$out" 2>"$tmp/kustomize.err"; then
			if "$yamlcheck" parse -k8s "$out" >/dev/null; then
				note "ok  $dir ($(grep -c '^kind:' "$out") objects)"
				rendered+=("$out")
				rendered_from[$out]=$dir
			else
				problem "$dir renders documents without apiVersion/kind"
			fi
		else
			problem "${kustomize_cmd[*]} $dir failed: $(cat "$tmp/kustomize.err")"
		fi
	done
fi
# --- Helm chart against kustomize ------------------------------------------
# deploy/helm/parley must render the same objects as k8s/ (deploy/helmcheck
# says how they are compared): its defaults against k8s/base, and
# ci/production-values.yaml against k8s/overlays/production. The Helm
# renders are kept in helm_rendered (files in $tmp) and validated by
# kubecheck like the kustomize renders.
section "Helm chart against kustomize"
helm_rendered=()
if (cd deploy/helmcheck && GOWORK=off go build -o "$tmp/helmcheck" . && GOWORK=off go vet . &&
	GOWORK=off go test -count=1 . >"$tmp/helmcheck-test.out" 2>&1); then
	for pair in "k8s/base:" "k8s/overlays/production:ci/production-values.yaml"; do
		dir=${pair%%:*} values=${pair#*:}
		kust="$tmp/rendered-$(echo "$dir" | tr / -).yaml"
		out="$tmp/rendered-helm-$(basename "$dir").yaml"
		if [[ ! -f $kust ]]; then
			problem "$dir: no kustomize render to compare the Helm chart with (above)"
			continue
		fi
		args=(-chart deploy/helm/parley -kustomized "$kust" -against "kustomize build $dir" -out "$out")
		[[ -z $values ]] || args+=(-f "deploy/helm/parley/$values")
		if "$tmp/helmcheck" "${args[@]}" >"$tmp/helmcheck.out" 2>&1; then
			note "ok  $(cat "$tmp/helmcheck.out")"
		else
			sed 's/^/  /' "$tmp/helmcheck.out"
			problem "the Helm chart${values:+ with $values} does not render what kustomize renders for $dir (above)"
		fi
		if [[ -s $out ]]; then
			helm_rendered+=("$out")
			rendered_from[$out]="the Helm chart${values:+ with $values}"
		fi
	done
else
	cat "$tmp/helmcheck-test.out" 2>/dev/null || true
	problem "deploy/helmcheck does not build or its own tests fail"
fi


section "Kubernetes API types and references (deploy/kubecheck)"
validated=("${rendered[@]}" "${helm_rendered[@]}")
if ((${#rendered[@]} > 0)) && [[ -x $kubecheck ]]; then
	if "$kubecheck" -q -secrets deploy/README.md "${validated[@]}" >"$tmp/kubecheck.out"; then
		for out in "${validated[@]}"; do
			note "ok  ${rendered_from[$out]}"
		done
	else
		while IFS= read -r line; do
			for out in "${validated[@]}"; do
				line=${line//"$out"/"${rendered_from[$out]}"}
			done
			problem "$line"
		done <"$tmp/kubecheck.out"
	fi
else
	problem "nothing rendered to validate"
fi
# The example Secrets are not rendered (operators copy them): the same
# strictness, so a copied example applies.
mapfile -t examples < <(find k8s -name '*.example.yaml' | sort)
if ((${#examples[@]} > 0)) && [[ -x $kubecheck ]]; then
	if "$kubecheck" -q -secrets deploy/README.md "${examples[@]}" >"$tmp/kubecheck.out"; then
		note "ok  ${examples[*]}"
	else
		while IFS= read -r line; do problem "$line"; done <"$tmp/kubecheck.out"
	fi
fi

# --- 3. Dockerfile services --------------------------------------------------
section "Dockerfile services"
# The Dockerfile's case table: one "name) mod=dir ;;" arm per line.
declare -A module_of=()
while read -r svc mod; do
	module_of[$svc]=$mod
done < <(sed -nE 's/^[[:space:]]+([a-z0-9_-]+)\)[[:space:]]+mod=([^[:space:];]+).*/\1 \2/p' "$dockerfile")
if ((${#module_of[@]} == 0)); then
	problem "$dockerfile: no 'name) mod=dir ;;' arms found in the SERVICE case table"
fi
mapfile -t services < <(printf '%s\n' "${!module_of[@]}" | sort)
for svc in "${services[@]}"; do
	mod=${module_of[$svc]}
	if [[ ! -f $mod/go.mod ]]; then
		problem "SERVICE=$svc: $mod/go.mod does not exist"
		continue
	fi
	if ! grep -qE "^[[:space:]]*(use[[:space:]]+)?\./${mod//./\\.}[[:space:]]*$" go.work; then
		problem "SERVICE=$svc: $mod is not in go.work (the image build uses the workspace)"
	fi
	if [[ -d $mod/cmd/$svc ]] && compgen -G "$mod/cmd/$svc/*.go" >/dev/null; then
		note "ok  $svc: $mod/cmd/$svc"
	else
		problem "SERVICE=$svc: $mod/cmd/$svc has no Go files (the image cannot build)"
	fi
done
# What compose builds and which Parley images (ghcr.io/parleychat/<service>,
# or parley/<service> as compose tags them) k8s runs; the MinIO image is
# built by deploy/docker/minio.Dockerfile, not this Dockerfile.
while read -r svc; do
	if [[ -n $svc && -z ${module_of[$svc]:-} ]]; then
		problem "$compose builds SERVICE=$svc, which $dockerfile does not know"
	fi
done < <(sed -nE 's/^[[:space:]]+SERVICE:[[:space:]]*"?([a-z0-9_-]+)"?.*/\1/p' "$compose")
while read -r svc; do
	if [[ -n $svc && -z ${module_of[$svc]:-} ]]; then
		problem "k8s runs image ghcr.io/parleychat/$svc, which $dockerfile does not build"
	fi
done < <(cat "${k8s_files[@]}" "$compose" | sed -nE 's#^[[:space:]]*(- name|image):[[:space:]]*"?(ghcr\.io/parleychat|parley)/([a-z0-9_-]+).*#\3#p' | grep -vx minio | sort -u)
# Parley's images are ghcr.io/parleychat/<binary>: a bare parley/<binary>
# is Docker Hub's "parley" namespace, which is not ours.
while IFS= read -r line; do
	problem "$compose: image ${line} is not ghcr.io/parleychat/<binary> (a registry namespace we own)"
done < <(sed -nE 's#^[[:space:]]*image:[[:space:]]*"?(parley/[a-z0-9_:.-]+).*#\1#p' "$compose")
while IFS= read -r line; do
	problem "k8s/ names image ${line}, not ghcr.io/parleychat/<binary> (a registry namespace we own)"
done < <(cat "${k8s_files[@]}" | sed -nE 's#^[[:space:]]*(- name|image):[[:space:]]*"?(parley/[a-z0-9_-]+).*#\2#p' | sort -u)
# Base images: pinned by digest (ARG <NAME>_IMAGE=<repo>:<tag>@sha256:...,
# FROM ${<NAME>_IMAGE}), or a stage of the file.
for df in deploy/docker/*Dockerfile*; do
	declare -A stages=()
	while read -r from; do
		ref=${from%% *}
		if [[ $ref =~ ^\$\{([A-Z_]+)\}$ ]]; then
			arg=${BASH_REMATCH[1]}
			if ! grep -qE "^ARG ${arg}=[^[:space:]]+@sha256:[0-9a-f]{64}[[:space:]]*$" "$df"; then
				problem "$df: FROM \${$arg}: ARG $arg has no default pinned by digest (@sha256:...)"
			fi
		elif [[ -z ${stages[$ref]:-} && ! $ref =~ @sha256:[0-9a-f]{64}$ ]]; then
			problem "$df: FROM $ref is not pinned by digest (@sha256:...)"
		fi
		if [[ $from =~ [[:space:]][Aa][Ss][[:space:]]+([A-Za-z0-9_.-]+) ]]; then
			stages[${BASH_REMATCH[1]}]=1
		fi
	done < <(sed -nE 's/^FROM[[:space:]]+(--platform=[^[:space:]]+[[:space:]]+)?(.*)$/\2/p' "$df")
done

# --- 4. PARLEY_* variables against flags -----------------------------------
section "PARLEY_* variables against flags"

# Flag names defined in the non-test Go files of the given package directories:
# fs.StringVar(&x, "name", ...), fs.Var(v, "name", ...), fs.String("name",
# def, "usage"), fs.Func("name", "usage", fn), across line breaks.
flags_in() {
	local files
	mapfile -t files < <(find "$@" -maxdepth 1 -type f -name '*.go' ! -name '*_test.go' 2>/dev/null | sort)
	if ((${#files[@]} == 0)); then
		return 0
	fi
	perl -0777 -ne '
		while (/\.(?:Bool|Int|Int64|Uint|Uint64|String|Float64|Duration|Text|)Var\(\s*[^,;]+?,\s*"([A-Za-z0-9][A-Za-z0-9._-]*)"/g) { print "$1\n" }
		while (/(?<![\w.])(\w+)\.(?:Bool|Int|Int64|Uint|Uint64|String|Float64|Duration)\(\s*"([A-Za-z0-9][A-Za-z0-9._-]*)"\s*,[^,;]+?,\s*"/g) { print "$2\n" unless $1 eq "slog" }
		while (/\.(?:Func|BoolFunc)\(\s*"([A-Za-z0-9][A-Za-z0-9._-]*)"\s*,\s*"/g) { print "$1\n" }
	' "${files[@]}"
}

# The directories (relative to the root) of the repository's packages that
# `go build ./cmd/<svc>` compiles into the binary, test files aside.
linked_dirs() {
	local mod=$1 svc=$2
	(cd "$mod" && go list -deps -f '{{.Dir}}' "./cmd/$svc") |
		while read -r dir; do
			if [[ $dir == "$root"/* ]]; then echo "${dir#"$root"/}"; fi
		done
}

# PARLEY_<FLAG>: upper case, dashes (and dots) as underscores, as ff does.
to_env() { tr 'a-z.-' 'A-Z__' | sed 's/^/PARLEY_/'; }

declare -A envs_of=() dirs_of=()
all_envs="$tmp/all.env"
: >"$all_envs"
# One go list per binary, all at once: each loads the whole workspace.
for svc in "${services[@]}"; do
	linked_dirs "${module_of[$svc]}" "$svc" >"$tmp/$svc.dirs" 2>"$tmp/$svc.golist.err" &
done
wait
for svc in "${services[@]}"; do
	mod=${module_of[$svc]}
	if [[ -s $tmp/$svc.golist.err || ! -s $tmp/$svc.dirs ]]; then
		problem "go list -deps ./cmd/$svc (in $mod) failed: $(head -5 "$tmp/$svc.golist.err")"
		: >"$tmp/$svc.env"
		envs_of[$svc]="$tmp/$svc.env"
		continue
	fi
	mapfile -t dirs <"$tmp/$svc.dirs"
	dirs_of[$svc]="$(wc -l <"$tmp/$svc.dirs") packages linked by $mod/cmd/$svc"
	flags_in "${dirs[@]}" | to_env | sort -u >"$tmp/$svc.env"
	if ((build)); then
		# The binary's own -h is the ground truth (flags registered by any
		# package it links). ff prints the standard flag usage.
		if (cd "$mod" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$tmp/bin/$svc" "./cmd/$svc") 2>"$tmp/build.err"; then
			note "built $svc"
			{ "$tmp/bin/$svc" -h 2>&1 || true; } | sed -nE 's/^[[:space:]]+-([A-Za-z0-9][A-Za-z0-9._-]*).*/\1/p' | to_env >>"$tmp/$svc.env"
			sort -u -o "$tmp/$svc.env" "$tmp/$svc.env"
		else
			problem "building $svc (cd $mod && go build ./cmd/$svc) failed: $(head -20 "$tmp/build.err")"
		fi
	fi
	envs_of[$svc]="$tmp/$svc.env"
	cat "$tmp/$svc.env" >>"$all_envs"
	note "$svc: $(wc -l <"$tmp/$svc.env") flags in ${dirs_of[$svc]}"
done
sort -u -o "$all_envs" "$all_envs"

# Every use: "service<TAB>VAR<TAB>file"; "*" when the file does not say which
# binary gets it (a patch, the Dockerfile, the README).
uses="$tmp/uses.tsv"
svc_list=$(IFS=,; echo "${services[*]}")
"$yamlcheck" env -services "$svc_list" "$compose" "${k8s_files[@]}" >"$uses"
for out in "${rendered[@]}"; do
	"$yamlcheck" env -services "$svc_list" "$out" |
		sed "s#\t$out\$#\tkustomize build ${rendered_from[$out]}#" >>"$uses"
done
{ grep -E '^ENV|^[[:space:]]+PARLEY_' "$dockerfile" || true; } | grep -oE 'PARLEY_[A-Z0-9_]+' | sed "s#^#*\t#; s#\$#\t$dockerfile#" >>"$uses" || true
if [[ -f deploy/README.md ]]; then
	# A name ending in "_" is a family written as PARLEY_MINIO_*, not a variable.
	{ grep -oE 'PARLEY_[A-Z0-9_]+' deploy/README.md || true; } | grep -v '_$' | sort -u | sed "s#^#*\t#; s#\$#\tdeploy/README.md#" >>"$uses" || true
fi

# Every (binary, variable) pair known, in memory: the loop below runs once
# per use and must not fork (check.sh should stay fast on a busy machine).
declare -A has_env=()
while read -r var; do has_env["*/$var"]=1; done <"$all_envs"
for svc in "${services[@]}"; do
	while read -r var; do has_env["$svc/$var"]=1; done <"${envs_of[$svc]}"
done
declare -A reported=()
unknown=0
while IFS=$'\t' read -r svc var file; do
	flag=${var#PARLEY_}
	flag=${flag,,}
	flag=${flag//_/-}
	if [[ $svc == "*" ]]; then
		[[ -n ${has_env["*/$var"]:-} ]] && continue
		key="*/$var"
		where="no binary defines -$flag"
	elif [[ -z ${envs_of[$svc]:-} ]]; then
		problem "$file: $var is given to '$svc', which the Dockerfile does not build"
		continue
	else
		[[ -n ${has_env["$svc/$var"]:-} ]] && continue
		key="$svc/$var"
		where="$svc has no flag -$flag (searched ${dirs_of[$svc]})"
	fi
	if [[ -z ${reported[$key]:-} ]]; then
		reported[$key]="$where; set in: $file"
	else
		reported[$key]+=", $file"
	fi
done < <(sort -u "$uses")
mapfile -t keys < <(printf '%s\n' "${!reported[@]}" | sort)
for key in "${keys[@]}"; do
	[[ -n $key ]] || continue
	problem "${key#*/}: ${reported[$key]}"
	unknown=$((unknown + 1))
done
if ((unknown == 0)); then
	note "all $(cut -f2 "$uses" | sort -u | wc -l) variables match a flag"
fi

# --- 5. gateway and file service share the object store ----------------------
section "file storage: gateway and file service agree"
# The gateways write the bytes and the file service completes, aborts and
# deletes the same uploads: a different bucket or endpoint on one side loses
# files. One deployment at a time: compose, and each kustomize build (or,
# without kustomize, k8s/base's manifests as written).
if ! "$yamlcheck" storage -services "$svc_list" -label "$compose" "$compose" | sed 's/^/  /'; then
	problem "$compose: storage settings disagree (above)"
fi
if ((${#rendered[@]} > 0)); then
	for out in "${rendered[@]}"; do
		if ! "$yamlcheck" storage -services "$svc_list" -label "kustomize build ${rendered_from[$out]}" "$out" | sed 's/^/  /'; then
			problem "kustomize build ${rendered_from[$out]}: storage settings disagree (above)"
		fi
	done
else
	mapfile -t base_files < <(find k8s/base -maxdepth 1 -name '*.yaml' ! -name kustomization.yaml ! -name '*.example.yaml' | sort)
	if ! "$yamlcheck" storage -services "$svc_list" -label k8s/base "${base_files[@]}" | sed 's/^/  /'; then
		problem "k8s/base: storage settings disagree (above)"
	fi
fi

# -----------------------------------------------------------------------------
section "result"
if ((failures > 0)); then
	echo "$failures problem(s)"
	exit 1
fi
echo "deploy check passed"
