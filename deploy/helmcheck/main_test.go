package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// check runs helmcheck on the demo chart in testdata against
// testdata/kustomized.yaml with the given values files, and returns its
// output and error.
func check(t *testing.T, values ...string) (string, error) {
	t.Helper()
	args := []string{"-chart", "testdata/chart", "-kustomized", "testdata/kustomized.yaml"}
	for _, v := range values {
		args = append(args, "-f", v)
	}
	var out strings.Builder
	err := run(args, &out)
	return out.String(), err
}

func TestEqualRendersPass(t *testing.T) {
	// The chart differs from the kustomize render only in what the
	// normalization removes: Helm's labels (on the object and the pod
	// template), the checksum annotation, the ConfigMap's name hash, key
	// order, the octal mode and comment-only documents.
	out, err := check(t)
	if err != nil {
		t.Fatalf("err = %v, want none; output:\n%s", err, out)
	}
	if !strings.Contains(out, "the same 2 objects") {
		t.Errorf("output = %q, want it to say the same 2 objects", out)
	}
}

func TestOneFieldDiffers(t *testing.T) {
	out, err := check(t, "testdata/debug-values.yaml")
	if !errors.Is(err, errDiffer) {
		t.Fatalf("err = %v, want errDiffer; output:\n%s", err, out)
	}
	want := "Deployment demo/web:\n" +
		`    spec.template.spec.containers[web].env[LOG_LEVEL].value: kustomize "info", helm "debug"` + "\n"
	if !strings.Contains(out, want) {
		t.Errorf("output does not name the object and field:\n%s\nwant it to contain:\n%s", out, want)
	}
	if strings.Contains(out, "ConfigMap") {
		t.Errorf("output reports the ConfigMap, which is equal:\n%s", out)
	}
}

func TestObjectOnOneSide(t *testing.T) {
	out, err := check(t, "testdata/no-configmap-values.yaml")
	if !errors.Is(err, errDiffer) {
		t.Fatalf("err = %v, want errDiffer; output:\n%s", err, out)
	}
	// Without the chart's ConfigMap the hash cannot be matched: the hashed
	// one is missing and the Deployment's reference differs.
	for _, want := range []string{
		"ConfigMap demo/web-config-2b7m9t6k4f:\n    only in the kustomize render",
		`spec.template.spec.volumes[config].configMap.name: kustomize "web-config-2b7m9t6k4f", helm "web-config"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestEnvOrderCounts(t *testing.T) {
	out, err := check(t, "testdata/reversed-values.yaml")
	if !errors.Is(err, errDiffer) {
		t.Fatalf("err = %v, want errDiffer; output:\n%s", err, out)
	}
	want := "spec.template.spec.containers[web].env: order differs: kustomize [LOG_LEVEL PORT], helm [PORT LOG_LEVEL]"
	if !strings.Contains(out, want) {
		t.Errorf("output lacks %q:\n%s", want, out)
	}
}

func TestOutWritesTheHelmRender(t *testing.T) {
	path := filepath.Join(t.TempDir(), "helm.yaml")
	if err := run([]string{"-chart", "testdata/chart", "-kustomized", "testdata/kustomized.yaml", "-out", path}, &strings.Builder{}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := decode(string(b))
	if err != nil {
		t.Fatalf("the written render does not parse: %v", err)
	}
	if len(objs) != 2 || key(objs[0]) != "ConfigMap demo/web-config" || key(objs[1]) != "Deployment demo/web" {
		t.Errorf("written render has %d objects, want the ConfigMap and the Deployment:\n%s", len(objs), b)
	}
	// As the chart renders it: Helm's labels still there, no NOTES.txt.
	if !strings.Contains(string(b), "helm.sh/chart: demo-0.1.0") || strings.Contains(string(b), "Installed") {
		t.Errorf("written render is not the raw Helm render:\n%s", b)
	}
}
