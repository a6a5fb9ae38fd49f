package main

import (
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"regexp"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"
)

// object is one Kubernetes object, decoded into JSON values (maps, slices,
// strings, float64, bools, nil), as the API server would read it.
type object = map[string]any

// helmLabels are the labels Helm charts put on their objects by convention;
// the kustomize base has none of them. Dropped before comparing.
var helmLabels = []string{
	"helm.sh/chart",
	"app.kubernetes.io/managed-by",
	"app.kubernetes.io/instance",
	"app.kubernetes.io/version",
}

// helmAnnotationPrefixes: annotations a chart adds to roll pods when a
// ConfigMap or Secret changes (kustomize does that with the name hash).
var helmAnnotationPrefixes = []string{"checksum/"}

// kustomizeHash matches the suffix kustomize's generators append to a
// ConfigMap's or Secret's name: "-" and 10 characters of its alphabet.
var kustomizeHash = regexp.MustCompile(`^(.+)-[bcdfghkmt2-9]{10}$`)

// decode reads a multi-document YAML stream into objects, skipping empty
// documents.
func decode(stream string) ([]object, error) {
	var objs []object
	for i, doc := range splitDocs(stream) {
		js, err := yaml.YAMLToJSON([]byte(doc))
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i+1, err)
		}
		var obj object
		if err := json.Unmarshal(js, &obj); err != nil {
			return nil, fmt.Errorf("document %d: %w", i+1, err)
		}
		if obj == nil {
			continue
		}
		objs = append(objs, obj)
	}
	return objs, nil
}

// key names an object: "Kind namespace/name" (apiVersion's group too when
// two kinds could share a name, which Parley's do not; it is compared as a
// field instead).
func key(o object) string {
	md, _ := o["metadata"].(map[string]any)
	ns, _ := md["namespace"].(string)
	name, _ := md["name"].(string)
	kind, _ := o["kind"].(string)
	if ns == "" {
		return kind + " " + name
	}
	return kind + " " + ns + "/" + name
}

// normalizeHelm drops what only a Helm chart adds: helmLabels from every
// object's and every pod template's labels, checksum/ annotations, and the
// label and annotation maps that end up empty.
func normalizeHelm(objs []object) {
	for _, o := range objs {
		for _, md := range metadatas(o) {
			if labels, ok := md["labels"].(map[string]any); ok {
				for _, l := range helmLabels {
					delete(labels, l)
				}
				if len(labels) == 0 {
					delete(md, "labels")
				}
			}
			if ann, ok := md["annotations"].(map[string]any); ok {
				for a := range ann {
					for _, p := range helmAnnotationPrefixes {
						if strings.HasPrefix(a, p) {
							delete(ann, a)
						}
					}
				}
				if len(ann) == 0 {
					delete(md, "annotations")
				}
			}
		}
	}
}

// metadatas returns an object's metadata and its pod template's.
func metadatas(o object) []map[string]any {
	var out []map[string]any
	if md, ok := o["metadata"].(map[string]any); ok {
		out = append(out, md)
	}
	if spec, ok := o["spec"].(map[string]any); ok {
		if tpl, ok := spec["template"].(map[string]any); ok {
			if md, ok := tpl["metadata"].(map[string]any); ok {
				out = append(out, md)
			}
		}
	}
	return out
}

// normalizeGenerated renames kustomize's generated ConfigMaps and Secrets
// ("nats-config-727g6dtg57") to the chart's names ("nats-config") where the
// chart has an object of the same kind, namespace and unhashed name, and
// replaces every string in the kustomize objects of that namespace that
// equals the hashed name (the references: volumes, envFrom, ...).
func normalizeGenerated(kust, helm []object) {
	inHelm := map[string]bool{}
	for _, o := range helm {
		inHelm[key(o)] = true
	}
	renames := map[string]map[string]string{} // namespace -> hashed -> plain
	for _, o := range kust {
		kind, _ := o["kind"].(string)
		if kind != "ConfigMap" && kind != "Secret" {
			continue
		}
		md := o["metadata"].(map[string]any)
		name, _ := md["name"].(string)
		m := kustomizeHash.FindStringSubmatch(name)
		if m == nil || inHelm[key(o)] {
			continue
		}
		ns, _ := md["namespace"].(string)
		plain := object{"kind": kind, "metadata": map[string]any{"name": m[1], "namespace": ns}}
		if !inHelm[key(plain)] {
			continue
		}
		if renames[ns] == nil {
			renames[ns] = map[string]string{}
		}
		renames[ns][name] = m[1]
	}
	for _, o := range kust {
		md, _ := o["metadata"].(map[string]any)
		ns, _ := md["namespace"].(string)
		if r := renames[ns]; r != nil {
			replaceStrings(o, r)
		}
	}
}

// replaceStrings replaces, in place, every string value in v that is a key
// of r by its value.
func replaceStrings(v any, r map[string]string) {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			if s, ok := e.(string); ok {
				if n, ok := r[s]; ok {
					v[k] = n
				}
				continue
			}
			replaceStrings(e, r)
		}
	case []any:
		for i, e := range v {
			if s, ok := e.(string); ok {
				if n, ok := r[s]; ok {
					v[i] = n
				}
				continue
			}
			replaceStrings(e, r)
		}
	}
}

// objectDiff is what differs in one object (or that it is on one side only).
type objectDiff struct {
	Key   string
	Lines []string
}

// compare normalizes both renders (see normalizeHelm, normalizeGenerated)
// and returns the differences, objects in key order. Empty: the same objects
// with deep-equal content.
func compare(kust, helm []object) ([]objectDiff, error) {
	normalizeHelm(helm)
	normalizeGenerated(kust, helm)
	km, err := byKey(kust, "kustomize")
	if err != nil {
		return nil, err
	}
	hm, err := byKey(helm, "helm")
	if err != nil {
		return nil, err
	}
	var diffs []objectDiff
	for _, k := range unionKeys(km, hm) {
		ko, kok := km[k]
		ho, hok := hm[k]
		switch {
		case !hok:
			diffs = append(diffs, objectDiff{k, []string{"only in the kustomize render (the chart does not render it)"}})
		case !kok:
			diffs = append(diffs, objectDiff{k, []string{"only in the Helm render (kustomize does not render it)"}})
		default:
			var lines []string
			diffValue(&lines, "", ko, ho)
			if len(lines) > 0 {
				diffs = append(diffs, objectDiff{k, lines})
			}
		}
	}
	return diffs, nil
}

// unionKeys is the keys of a and b, sorted, each once.
func unionKeys[A, B any](a map[string]A, b map[string]B) []string {
	keys := slices.Sorted(maps.Keys(a))
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

func byKey(objs []object, side string) (map[string]object, error) {
	m := map[string]object{}
	for _, o := range objs {
		k := key(o)
		if _, dup := m[k]; dup {
			return nil, fmt.Errorf("%s renders %s twice", side, k)
		}
		m[k] = o
	}
	return m, nil
}

// diffValue appends one line per difference between k (kustomize) and h
// (Helm) at path p. Lists whose elements are all maps with distinct "name"
// fields (containers, env, ports, volumes) are compared by name, so a
// missing entry shows as one line and paths read env[PARLEY_NATS_URL]; their
// order is compared too (it matters for $(VAR) references in env).
func diffValue(lines *[]string, p string, k, h any) {
	switch kv := k.(type) {
	case map[string]any:
		hv, ok := h.(map[string]any)
		if !ok {
			*lines = append(*lines, fmt.Sprintf("%s: kustomize %s, helm %s", show(p), brief(k), brief(h)))
			return
		}
		for _, f := range unionKeys(kv, hv) {
			kf, kok := kv[f]
			hf, hok := hv[f]
			fp := join(p, f)
			switch {
			case !hok:
				*lines = append(*lines, fmt.Sprintf("%s: kustomize %s, helm (missing)", fp, brief(kf)))
			case !kok:
				*lines = append(*lines, fmt.Sprintf("%s: kustomize (missing), helm %s", fp, brief(hf)))
			default:
				diffValue(lines, fp, kf, hf)
			}
		}
	case []any:
		hv, ok := h.([]any)
		if !ok {
			*lines = append(*lines, fmt.Sprintf("%s: kustomize %s, helm %s", show(p), brief(k), brief(h)))
			return
		}
		kn, kok := names(kv)
		hn, hok := names(hv)
		if kok && hok {
			diffNamed(lines, p, kv, hv, kn, hn)
			return
		}
		for i := 0; i < max(len(kv), len(hv)); i++ {
			ip := fmt.Sprintf("%s[%d]", p, i)
			switch {
			case i >= len(hv):
				*lines = append(*lines, fmt.Sprintf("%s: kustomize %s, helm (missing)", ip, brief(kv[i])))
			case i >= len(kv):
				*lines = append(*lines, fmt.Sprintf("%s: kustomize (missing), helm %s", ip, brief(hv[i])))
			default:
				diffValue(lines, ip, kv[i], hv[i])
			}
		}
	default:
		if !reflect.DeepEqual(k, h) {
			*lines = append(*lines, fmt.Sprintf("%s: kustomize %s, helm %s", show(p), brief(k), brief(h)))
		}
	}
}

func diffNamed(lines *[]string, p string, kv, hv []any, kn, hn []string) {
	hi := map[string]int{}
	for i, n := range hn {
		hi[n] = i
	}
	ki := map[string]int{}
	for i, n := range kn {
		ki[n] = i
		ep := fmt.Sprintf("%s[%s]", p, n)
		j, ok := hi[n]
		if !ok {
			*lines = append(*lines, fmt.Sprintf("%s: kustomize %s, helm (missing)", ep, brief(kv[i])))
			continue
		}
		diffValue(lines, ep, kv[i], hv[j])
	}
	for j, n := range hn {
		if _, ok := ki[n]; !ok {
			*lines = append(*lines, fmt.Sprintf("%s[%s]: kustomize (missing), helm %s", p, n, brief(hv[j])))
		}
	}
	// The common entries in the same order?
	var ko, ho []string
	for _, n := range kn {
		if _, ok := hi[n]; ok {
			ko = append(ko, n)
		}
	}
	for _, n := range hn {
		if _, ok := ki[n]; ok {
			ho = append(ho, n)
		}
	}
	if !slices.Equal(ko, ho) {
		*lines = append(*lines, fmt.Sprintf("%s: order differs: kustomize [%s], helm [%s]", show(p), strings.Join(ko, " "), strings.Join(ho, " ")))
	}
}

// names returns the "name" fields of a list of maps, when every element
// has a distinct one.
func names(l []any) ([]string, bool) {
	if len(l) == 0 {
		return nil, false
	}
	seen := map[string]bool{}
	out := make([]string, 0, len(l))
	for _, e := range l {
		m, ok := e.(map[string]any)
		if !ok {
			return nil, false
		}
		n, ok := m["name"].(string)
		if !ok || seen[n] {
			return nil, false
		}
		seen[n] = true
		out = append(out, n)
	}
	return out, true
}

func join(p, f string) string {
	if p == "" {
		return f
	}
	return p + "." + f
}

func show(p string) string {
	if p == "" {
		return "(object)"
	}
	return p
}

// brief shows a value in one line of JSON, cut at 200 bytes.
func brief(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprintf("%v", v)
	}
	s := string(b)
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}
