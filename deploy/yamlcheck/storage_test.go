package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A gateway writing to one bucket while the file service completes uploads
// in another loses every file; check.sh relies on `storage` to catch that in
// compose (anchors, merge lists) and in rendered Kubernetes manifests
// (literals and Secret references).
func TestStorageComparesGatewayAndFileSettings(t *testing.T) {
	const composeHead = `
x-storage: &storage
  PARLEY_MINIO_ENDPOINT: minio:9000
  PARLEY_MINIO_BUCKET: parley-files
x-common: &common
  PARLEY_NATS_URL: nats://nats:4222
services:
  minio:
    image: quay.io/minio/minio:RELEASE.2025-09-07T16-13-09Z
    environment: {MINIO_ROOT_USER: parley}
  gateway-1:
    build: {context: ., args: {SERVICE: gateway}}
    environment:
      <<: [*common, *storage]
      PARLEY_MAX_UPLOAD_SIZE: "1000"
`
	k8sDeployment := func(name, image, env string) string {
		return `
apiVersion: apps/v1
kind: Deployment
metadata: {name: ` + name + `}
spec:
  template:
    spec:
      containers:
        - name: ` + name + `
          image: ` + image + `
          env:
` + env
	}
	secretEnv := func(key string) string {
		return `            - name: PARLEY_MINIO_ENDPOINT
              value: minio:9000
            - name: PARLEY_MINIO_ACCESS_KEY
              valueFrom: {secretKeyRef: {name: parley-minio, key: ` + key + `}}
`
	}
	for _, tc := range []struct {
		name, body string
		wantErr    []string // substrings of the error; none: must pass
	}{
		{
			name: "compose agrees",
			body: composeHead + `
  file:
    build: {context: ., args: {SERVICE: file}}
    environment:
      <<: [*common, *storage]
      PARLEY_FILE_MAX_SIZE: "1000"
`,
		},
		{
			name: "compose bucket differs",
			body: composeHead + `
  file:
    build: {context: ., args: {SERVICE: file}}
    environment:
      <<: *storage
      PARLEY_MINIO_BUCKET: other
      PARLEY_FILE_MAX_SIZE: "1000"
`,
			wantErr: []string{`PARLEY_MINIO_BUCKET: gateway (compose service gateway-1) has "parley-files", file (compose service file) has "other"`},
		},
		{
			name: "compose file without store, limit unset",
			body: composeHead + `
  file:
    build: {context: ., args: {SERVICE: file}}
    environment: ["PARLEY_NATS_URL=nats://nats:4222"]
`,
			wantErr: []string{
				"PARLEY_MINIO_ENDPOINT: gateway (compose service gateway-1) has \"minio:9000\", file (compose service file) has (unset)",
				"file (compose service file) has no store",
				`announces PARLEY_MAX_UPLOAD_SIZE="1000" but file (compose service file) enforces PARLEY_FILE_MAX_SIZE=(unset)`,
			},
		},
		{
			name: "k8s same Secret key",
			body: k8sDeployment("gateway", "parley/gateway", secretEnv("access-key")) + "---" +
				k8sDeployment("file", "registry.example.com/parley/file:v1", secretEnv("access-key")),
		},
		{
			name: "k8s different Secret key",
			body: k8sDeployment("gateway", "parley/gateway", secretEnv("access-key")) + "---" +
				k8sDeployment("file", "parley/file", secretEnv("secret-key")),
			wantErr: []string{"PARLEY_MINIO_ACCESS_KEY: gateway (Deployment/gateway container gateway) has \"valueFrom {secretKeyRef: {key: access-key, name: parley-minio}}\", file (Deployment/file container file) has \"valueFrom {secretKeyRef: {key: secret-key, name: parley-minio}}\""},
		},
		{
			name: "k8s storage dir on one side only",
			body: k8sDeployment("gateway", "parley/gateway", "            - {name: PARLEY_STORAGE_DIR, value: /files}\n") + "---" +
				k8sDeployment("file", "parley/file", secretEnv("access-key")),
			wantErr: []string{"PARLEY_STORAGE_DIR: gateway (Deployment/gateway container gateway) has \"/files\", file (Deployment/file container file) has (unset)"},
		},
		{
			name: "no gateway or file service",
			body: k8sDeployment("auth", "parley/auth", "            - {name: PARLEY_MINIO_BUCKET, value: x}\n"),
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "d.yaml")
			if err := os.WriteFile(p, []byte(tc.body), 0o644); err != nil {
				t.Fatal(err)
			}
			var out strings.Builder
			err := runStorage([]string{"-services", "gateway,file,auth", "-label", "d", p}, &out)
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Fatalf("runStorage: %v", err)
				}
				if !strings.HasPrefix(out.String(), "ok  d: ") {
					t.Errorf("output %q, want an ok line", out.String())
				}
				return
			}
			if !errors.Is(err, errStorage) {
				t.Fatalf("runStorage: err = %v, want errStorage", err)
			}
			for _, want := range tc.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error does not say %q:\n%v", want, err)
				}
			}
		})
	}
}
