// Command yamlcheck is deploy/check.sh's YAML half: it parses the deployment
// files without Docker or a cluster.
//
//	yamlcheck parse [-k8s] FILE...
//	    Decode every document of every file (syntax, duplicate keys, bad
//	    aliases). With -k8s, also require apiVersion and kind in each
//	    non-empty document, as the API server and kustomize do.
//	yamlcheck env -services gateway,auth,... FILE...
//	    Print "SERVICE<TAB>VAR<TAB>FILE" for every PARLEY_* environment
//	    variable that a compose service or Kubernetes container sets.
//	    SERVICE is the Parley binary it is given to, from the compose build
//	    arg SERVICE, the image name (parley/<service>) or the container
//	    name, or "*" when the file does not say (a kustomize patch).
//	yamlcheck storage -services gateway,file,... [-label NAME] FILE...
//	    Treat the FILEs as one deployment (a compose file, or one kustomize
//	    build) and check that its gateway and file containers agree on the
//	    object store: every PARLEY_STORAGE_DIR and PARLEY_MINIO_* variable
//	    one of them sets, all of them set to the same value (the same
//	    literal, or the same Secret key); a file service has a store at
//	    all; and each gateway's PARLEY_MAX_UPLOAD_SIZE equals each file
//	    service's PARLEY_FILE_MAX_SIZE (both unset: both defaults).
//
// It is its own module, outside go.work, so it never touches the services'
// dependencies: run it with GOWORK=off. It uses go.yaml.in/yaml/v3, the
// maintained successor of gopkg.in/yaml.v3 (same API).
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path"
	"regexp"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "parse":
		err = runParse(os.Args[2:])
	case "env":
		err = runEnv(os.Args[2:], os.Stdout)
	case "storage":
		err = runStorage(os.Args[2:], os.Stdout)
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "yamlcheck:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: yamlcheck parse [-k8s] FILE... | yamlcheck env -services a,b FILE... | yamlcheck storage -services a,b [-label NAME] FILE...")
	os.Exit(2)
}

func runParse(args []string) error {
	fs := flag.NewFlagSet("parse", flag.ExitOnError)
	k8s := fs.Bool("k8s", false, "require apiVersion and kind in every document")
	_ = fs.Parse(args)
	var failed []string
	for _, file := range fs.Args() {
		docs, err := decodeFile(file)
		if err != nil {
			failed = append(failed, err.Error())
			continue
		}
		if *k8s {
			for i, doc := range docs {
				if err := checkK8s(doc); err != nil {
					failed = append(failed, fmt.Sprintf("%s: document %d: %v", file, i+1, err))
				}
			}
		}
		fmt.Printf("ok  %s (%d documents)\n", file, len(docs))
	}
	if len(failed) > 0 {
		return errors.New(strings.Join(failed, "\n"))
	}
	return nil
}

// decodeFile returns the non-empty documents of file, each decoded to plain
// Go values (merge keys and aliases resolved).
func decodeFile(file string) ([]any, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	dec := yaml.NewDecoder(f)
	var docs []any
	for {
		var doc any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		if doc != nil {
			docs = append(docs, doc)
		}
	}
}

func checkK8s(doc any) error {
	m, ok := doc.(map[string]any)
	if !ok {
		return fmt.Errorf("not a mapping but %T", doc)
	}
	for _, key := range []string{"apiVersion", "kind"} {
		if s, _ := m[key].(string); s == "" {
			return fmt.Errorf("no %s", key)
		}
	}
	return nil
}

var parleyVar = regexp.MustCompile(`^PARLEY_[A-Z0-9_]+$`)

type envUse struct{ service, name, file string }

func runEnv(args []string, w io.Writer) error {
	fs := flag.NewFlagSet("env", flag.ExitOnError)
	services := fs.String("services", "", "comma-separated Parley binaries (the Dockerfile's SERVICE values)")
	_ = fs.Parse(args)
	known := knownServices(*services)
	var uses []envUse
	for _, file := range fs.Args() {
		docs, err := decodeFile(file)
		if err != nil {
			return err
		}
		for _, doc := range docs {
			c := collector{known: known, file: file, seen: map[string]bool{}}
			c.walk(doc)
			uses = append(uses, c.uses...)
		}
	}
	sort.Slice(uses, func(i, j int) bool {
		a, b := uses[i], uses[j]
		if a.file != b.file {
			return a.file < b.file
		}
		if a.service != b.service {
			return a.service < b.service
		}
		return a.name < b.name
	})
	for _, u := range uses {
		fmt.Fprintf(w, "%s\t%s\t%s\n", u.service, u.name, u.file)
	}
	return nil
}

// collector finds PARLEY_* variables in one document. A compose service is
// a mapping with "environment"; a Kubernetes container (or a patch of one)
// is a mapping with an "env" list. Any other "name: PARLEY_X" (a JSON patch
// value) is reported for service "*".
type collector struct {
	known map[string]bool
	file  string
	seen  map[string]bool // "service/name" and "name" already reported
	uses  []envUse
}

func (c *collector) add(service, name string) {
	if !parleyVar.MatchString(name) {
		return
	}
	// A container's variables are seen twice: once with the container (its
	// service known), then again as plain "name:" entries while descending.
	if c.seen[service+"/"+name] || (service == "*" && c.seen[name]) {
		return
	}
	c.seen[service+"/"+name] = true
	c.seen[name] = true
	c.uses = append(c.uses, envUse{service, name, c.file})
}

func (c *collector) walk(v any) {
	switch v := v.(type) {
	case map[string]any:
		if env, ok := v["environment"]; ok {
			svc := c.serviceOf(v)
			switch env := env.(type) {
			case map[string]any:
				for k := range env {
					c.add(svc, k)
				}
			case []any:
				for _, e := range env {
					if s, ok := e.(string); ok {
						c.add(svc, strings.SplitN(s, "=", 2)[0])
					}
				}
			}
		}
		if env, ok := v["env"].([]any); ok {
			svc := c.serviceOf(v)
			for _, e := range env {
				if m, ok := e.(map[string]any); ok {
					if s, ok := m["name"].(string); ok {
						c.add(svc, s)
					}
				}
			}
		}
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			c.walk(v[k])
		}
		if s, ok := v["name"].(string); ok {
			c.add("*", s)
		}
		// A kustomize inline patch is YAML inside a string.
		if p, ok := v["patch"].(string); ok {
			dec := yaml.NewDecoder(strings.NewReader(p))
			for {
				var doc any
				if err := dec.Decode(&doc); err != nil {
					break // a broken patch fails `kustomize build`, checked separately
				}
				c.walk(doc)
			}
		}
	case []any:
		for _, e := range v {
			c.walk(e)
		}
	}
}

// serviceOf names the Parley binary a compose service or container runs.
func (c *collector) serviceOf(m map[string]any) string { return binaryOf(m, c.known) }

// binaryOf names the Parley binary a compose service or container runs: the
// compose build arg SERVICE, the image name (parley/<service>) or the
// container name, if one of them is a known binary; "*" otherwise.
func binaryOf(m map[string]any, known map[string]bool) string {
	if b, ok := m["build"].(map[string]any); ok {
		if args, ok := b["args"].(map[string]any); ok {
			if s, ok := args["SERVICE"].(string); ok && s != "" {
				return s
			}
		}
	}
	if img, ok := m["image"].(string); ok {
		// registry.example.com:5000/parley/gateway:v1@sha256:... -> gateway
		repo := strings.SplitN(img, "@", 2)[0]
		base := path.Base(repo)
		base = strings.SplitN(base, ":", 2)[0]
		if known[base] {
			return base
		}
		if s := strings.TrimPrefix(base, "parley-"); known[s] {
			return s
		}
	}
	if n, ok := m["name"].(string); ok && known[n] {
		return n
	}
	return "*"
}
