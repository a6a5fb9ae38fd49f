package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The env listing is what check.sh trusts to say which binary gets which
// variable: compose anchors and merge keys, k8s containers, and kustomize
// inline patches must all be attributed correctly.
func TestEnvAttributesVariablesToBinaries(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	compose := write("compose.yml", `
x-env: &env
  PARLEY_NATS_URL: nats://nats:4222
services:
  auth:
    build: {context: ., args: {SERVICE: auth}}
    environment:
      <<: *env
      PARLEY_TOKEN_KEY: k
  gw:
    image: registry.example.com:5000/parley/gateway:v1
    environment: ["PARLEY_TCP_ADDR=0.0.0.0:7420", "OTHER=1"]
  redis:
    image: redis:7-alpine
    environment: {PARLEY_ODD: x}
`)
	k8s := write("k8s.yaml", `
apiVersion: apps/v1
kind: Deployment
spec:
  template:
    spec:
      containers:
        - name: presence
          image: parley/presence
          env:
            - {name: PARLEY_REDIS_ADDR, value: redis:6379}
            - {name: GOMEMLIMIT, value: "1"}
---
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
patches:
  - patch: |-
      kind: Deployment
      spec: {template: {spec: {containers: [{name: auth, env: [{name: PARLEY_KV_REPLICAS, value: "1"}]}]}}}
  - patch: |-
      - op: add
        path: /spec/template/spec/containers/0/env/-
        value: {name: PARLEY_LOG_LEVEL, value: debug}
`)
	var out strings.Builder
	if err := runEnv([]string{"-services", "gateway,auth,presence", compose, k8s}, &out); err != nil {
		t.Fatal(err)
	}
	got := strings.ReplaceAll(out.String(), dir+string(filepath.Separator), "")
	want := strings.Join([]string{
		"*\tPARLEY_ODD\tcompose.yml",
		"auth\tPARLEY_NATS_URL\tcompose.yml",
		"auth\tPARLEY_TOKEN_KEY\tcompose.yml",
		"gateway\tPARLEY_TCP_ADDR\tcompose.yml",
		"*\tPARLEY_LOG_LEVEL\tk8s.yaml",
		"auth\tPARLEY_KV_REPLICAS\tk8s.yaml",
		"presence\tPARLEY_REDIS_ADDR\tk8s.yaml",
	}, "\n") + "\n"
	if got != want {
		t.Errorf("env listing:\n%s\nwant:\n%s", got, want)
	}
}

func TestParseRejectsBrokenFiles(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		k8s, ok    bool
	}{
		{"valid compose", "services:\n  a: {image: x}\n", false, true},
		{"duplicate key", "a: 1\na: 2\n", false, false},
		{"bad indentation", "a:\n  b: 1\n c: 2\n", false, false},
		{"k8s document", "apiVersion: v1\nkind: Service\n---\n", true, true},
		{"k8s without kind", "apiVersion: v1\nmetadata: {name: x}\n", true, false},
		{"k8s list at top", "- a\n", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "f.yaml")
			if err := os.WriteFile(p, []byte(tc.body), 0o644); err != nil {
				t.Fatal(err)
			}
			args := []string{p}
			if tc.k8s {
				args = append([]string{"-k8s"}, args...)
			}
			err := runParse(args)
			if (err == nil) != tc.ok {
				t.Errorf("runParse: err = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}
