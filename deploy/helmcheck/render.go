package main

import (
	"context"
	"fmt"
	"maps"
	"path"
	"slices"
	"strings"

	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/common/util"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/engine"
)

// render renders the chart in chartDir as `helm template` would for an
// install of the release named release: the chart's values.yaml, then each
// of valuesFiles over it (later files win, maps merged key by key), checked
// against values.schema.json when the chart has one. It returns one YAML
// stream, the templates in name order, each document after a
// "# Source: <chart>/templates/<file>" comment. NOTES.txt and partials
// (_*.tpl) produce no documents.
func render(chartDir, release string, valuesFiles []string) (string, error) {
	ch, err := loader.Load(chartDir)
	if err != nil {
		return "", fmt.Errorf("load chart %s: %w", chartDir, err)
	}
	vals := map[string]any{}
	for _, f := range valuesFiles {
		v, err := common.ReadValuesFile(f)
		if err != nil {
			return "", fmt.Errorf("values %s: %w", f, err)
		}
		vals = mergeValues(vals, v.AsMap())
	}
	opts := common.ReleaseOptions{Name: release, Namespace: "default", Revision: 1, IsInstall: true}
	rv, err := util.ToRenderValuesWithSchemaValidation(ch, vals, opts, common.DefaultCapabilities, false)
	if err != nil {
		return "", fmt.Errorf("values: %w", err)
	}
	out, err := engine.Engine{}.RenderWithContext(context.Background(), ch, rv)
	if err != nil {
		return "", fmt.Errorf("render %s: %w", chartDir, err)
	}
	var b strings.Builder
	for _, name := range slices.Sorted(maps.Keys(out)) {
		base := path.Base(name)
		if base == "NOTES.txt" || strings.HasPrefix(base, "_") {
			continue
		}
		for _, doc := range splitDocs(out[name]) {
			fmt.Fprintf(&b, "---\n# Source: %s\n%s\n", name, doc)
		}
	}
	return b.String(), nil
}

// splitDocs splits a YAML stream at its "---" lines and drops the
// documents that hold nothing but comments and blank lines.
func splitDocs(s string) []string {
	var docs []string
	for _, d := range strings.Split("\n"+s, "\n---") {
		d = strings.Trim(d, "\n")
		if d == "" || !hasContent(d) {
			continue
		}
		docs = append(docs, d)
	}
	return docs
}

func hasContent(doc string) bool {
	for _, line := range strings.Split(doc, "\n") {
		t := strings.TrimSpace(line)
		if t != "" && !strings.HasPrefix(t, "#") {
			return true
		}
	}
	return false
}

// mergeValues returns dst with src over it: maps merge key by key, anything
// else in src replaces dst's (as helm's -f does).
func mergeValues(dst, src map[string]any) map[string]any {
	out := maps.Clone(dst)
	for k, v := range src {
		if sm, ok := v.(map[string]any); ok {
			if dm, ok := out[k].(map[string]any); ok {
				out[k] = mergeValues(dm, sm)
				continue
			}
		}
		out[k] = v
	}
	return out
}
