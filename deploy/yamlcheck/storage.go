package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
)

// The gateways write file bytes into the object store and the file service
// manages the same uploads there, so within one deployment they must name
// the same store; and the gateway's announced upload limit (Tus-Max-Size)
// should be the limit the file service enforces, or tus clients are told a
// size they will be refused.
const (
	gatewayBinary = "gateway"
	fileBinary    = "file"
	storageDirVar = "PARLEY_STORAGE_DIR"
	minioPrefix   = "PARLEY_MINIO_"
	minioEndpoint = "PARLEY_MINIO_ENDPOINT"
	uploadSizeVar = "PARLEY_MAX_UPLOAD_SIZE" // gateway
	fileMaxVar    = "PARLEY_FILE_MAX_SIZE"   // file service
	unset         = "(unset)"
)

// errStorage is returned when the storage settings disagree; the details
// are in the message.
var errStorage = errors.New("gateway and file service disagree on file storage")

// container is one compose service or Kubernetes container with its
// PARLEY_* environment.
type container struct {
	where  string            // for messages: "compose service gateway-1", "Deployment/file container file"
	binary string            // the Parley binary it runs, "*" when unknown
	env    map[string]string // PARLEY_* variable -> its value as written (canonical text)
}

// runStorage checks the gateway and file containers of FILE... (together one
// deployment) and writes a one-line summary to w.
func runStorage(args []string, w io.Writer) error {
	fs := flag.NewFlagSet("storage", flag.ExitOnError)
	services := fs.String("services", "", "comma-separated Parley binaries (the Dockerfile's SERVICE values)")
	label := fs.String("label", "", "name of the deployment in messages (default: the file names)")
	_ = fs.Parse(args)
	known := knownServices(*services)
	name := *label
	if name == "" {
		name = strings.Join(fs.Args(), " ")
	}
	var all []container
	for _, file := range fs.Args() {
		docs, err := decodeFile(file)
		if err != nil {
			return err
		}
		for _, doc := range docs {
			all = append(all, containersIn(doc, known)...)
		}
	}
	problems, summary := checkStorage(all)
	if len(problems) > 0 {
		return fmt.Errorf("%s: %w:\n  %s", name, errStorage, strings.Join(problems, "\n  "))
	}
	fmt.Fprintf(w, "ok  %s: %s\n", name, summary)
	return nil
}

// checkStorage returns what is wrong with the containers' storage settings,
// or a summary of what they share.
func checkStorage(all []container) (problems []string, summary string) {
	var cs []container
	for _, c := range all {
		if c.binary == gatewayBinary || c.binary == fileBinary {
			cs = append(cs, c)
		}
	}
	if len(cs) == 0 {
		return nil, "no gateway or file service"
	}
	// Gateways first: the first one is the reference the others are
	// compared with.
	sort.SliceStable(cs, func(i, j int) bool { return cs[i].binary == gatewayBinary && cs[j].binary != gatewayBinary })
	// Every storage variable any of them sets must have one value in all.
	vars := map[string]bool{}
	for _, c := range cs {
		for k := range c.env {
			if isStorageVar(k) {
				vars[k] = true
			}
		}
	}
	names := make([]string, 0, len(vars))
	for k := range vars {
		names = append(names, k)
	}
	sort.Strings(names)
	ref := cs[0]
	for _, k := range names {
		for _, c := range cs[1:] {
			if a, b := valueOf(ref, k), valueOf(c, k); a != b {
				problems = append(problems, fmt.Sprintf("%s: %s (%s) has %s, %s (%s) has %s",
					k, ref.binary, ref.where, a, c.binary, c.where, b))
			}
		}
	}
	for _, c := range cs {
		if c.binary == fileBinary && c.env[minioEndpoint] == "" && c.env[storageDirVar] == "" {
			problems = append(problems, fmt.Sprintf("file (%s) has no store (%s or %s): it exits at start",
				c.where, minioEndpoint, storageDirVar))
		}
	}
	// Upload limit: announced by every gateway, enforced by every file
	// replica. Both unset means both code defaults (10 GiB).
	for _, g := range cs {
		if g.binary != gatewayBinary {
			continue
		}
		for _, f := range cs {
			if f.binary != fileBinary {
				continue
			}
			if a, b := valueOf(g, uploadSizeVar), valueOf(f, fileMaxVar); a != b {
				problems = append(problems, fmt.Sprintf("gateway (%s) announces %s=%s but file (%s) enforces %s=%s: keep them equal",
					g.where, uploadSizeVar, a, f.where, fileMaxVar, b))
			}
		}
	}
	store := valueOf(ref, minioEndpoint)
	if store == unset {
		store = valueOf(ref, storageDirVar)
	}
	return problems, fmt.Sprintf("%d gateway/file containers share the store %s (%d storage variables)",
		len(cs), store, len(names))
}

func isStorageVar(name string) bool {
	return name == storageDirVar || strings.HasPrefix(name, minioPrefix)
}

func valueOf(c container, name string) string {
	v, ok := c.env[name]
	if !ok {
		return unset
	}
	return fmt.Sprintf("%q", v)
}

func knownServices(list string) map[string]bool {
	known := map[string]bool{}
	for _, s := range strings.Split(list, ",") {
		if s = strings.TrimSpace(s); s != "" {
			known[s] = true
		}
	}
	return known
}

// containersIn finds the compose services (top-level "services") and the
// Kubernetes containers (any "containers" or "initContainers" list, as in a
// pod template) of one document.
func containersIn(doc any, known map[string]bool) []container {
	top, ok := doc.(map[string]any)
	if !ok {
		return nil
	}
	var out []container
	if svcs, ok := top["services"].(map[string]any); ok {
		keys := sortedKeys(svcs)
		for _, k := range keys {
			m, ok := svcs[k].(map[string]any)
			if !ok {
				continue
			}
			env, ok := composeEnv(m["environment"])
			if !ok {
				continue
			}
			out = append(out, container{where: "compose service " + k, binary: binaryOf(m, known), env: env})
		}
		return out
	}
	kind, _ := top["kind"].(string)
	name := ""
	if md, ok := top["metadata"].(map[string]any); ok {
		name, _ = md["name"].(string)
	}
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for _, list := range []string{"initContainers", "containers"} {
				items, _ := v[list].([]any)
				for _, it := range items {
					m, ok := it.(map[string]any)
					if !ok {
						continue
					}
					cname, _ := m["name"].(string)
					out = append(out, container{
						where:  fmt.Sprintf("%s/%s container %s", kind, name, cname),
						binary: binaryOf(m, known),
						env:    k8sEnv(m["env"]),
					})
				}
			}
			for _, k := range sortedKeys(v) {
				if k != "containers" && k != "initContainers" {
					walk(v[k])
				}
			}
		case []any:
			for _, e := range v {
				walk(e)
			}
		}
	}
	walk(top)
	return out
}

// composeEnv reads a compose "environment" (a mapping, or a list of
// "NAME=value"; a bare NAME takes the value from the host, written "").
func composeEnv(v any) (map[string]string, bool) {
	env := map[string]string{}
	switch v := v.(type) {
	case map[string]any:
		for k, val := range v {
			if parleyVar.MatchString(k) {
				env[k] = canonical(val)
			}
		}
	case []any:
		for _, e := range v {
			s, ok := e.(string)
			if !ok {
				continue
			}
			k, val, _ := strings.Cut(s, "=")
			if parleyVar.MatchString(k) {
				env[k] = val
			}
		}
	default:
		return nil, false
	}
	return env, true
}

// k8sEnv reads a container's env list: value, or valueFrom written out
// (two variables from the same Secret key compare equal).
func k8sEnv(v any) map[string]string {
	env := map[string]string{}
	items, _ := v.([]any)
	for _, it := range items {
		m, ok := it.(map[string]any)
		if !ok {
			continue
		}
		k, _ := m["name"].(string)
		if !parleyVar.MatchString(k) {
			continue
		}
		if from, ok := m["valueFrom"]; ok {
			env[k] = "valueFrom " + canonical(from)
		} else {
			env[k] = canonical(m["value"])
		}
	}
	return env
}

// canonical writes a YAML value as text with sorted keys, so equal values
// give equal text.
func canonical(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	case map[string]any:
		parts := make([]string, 0, len(v))
		for _, k := range sortedKeys(v) {
			parts = append(parts, k+": "+canonical(v[k]))
		}
		return "{" + strings.Join(parts, ", ") + "}"
	case []any:
		parts := make([]string, 0, len(v))
		for _, e := range v {
			parts = append(parts, canonical(e))
		}
		return "[" + strings.Join(parts, ", ") + "]"
	default:
		return fmt.Sprint(v)
	}
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
