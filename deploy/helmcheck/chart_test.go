package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The real chart with an external NATS, Redis and object store: none of
// the bundled ones is rendered, and every deployable is pointed at the
// external ones.
func TestChartExternalStores(t *testing.T) {
	values := filepath.Join(t.TempDir(), "external.yaml")
	err := os.WriteFile(values, []byte(`
nats:
  external:
    url: tls://nats.example.com:4222
    tlsSecret: parley-nats-client
redis:
  external:
    addr: redis.example.com:6380
    port: 6380
objectStore:
  external:
    endpoint: s3.eu-west-1.amazonaws.com:443
    region: eu-west-1
`), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	rendered, err := render("../helm/parley", "parley", []string{values})
	if err != nil {
		t.Fatal(err)
	}
	objs, err := decode(rendered)
	if err != nil {
		t.Fatal(err)
	}
	deployments := 0
	for _, o := range objs {
		k := key(o)
		for _, bundled := range []string{"/nats", "/redis", "/minio"} {
			if strings.HasSuffix(k, bundled) || strings.Contains(k, bundled+"-") && !strings.Contains(k, "-to-") {
				t.Errorf("%s rendered with an external store", k)
			}
		}
		if o["kind"] != "Deployment" {
			continue
		}
		deployments++
		env := containerEnv(o)
		if got := env["PARLEY_NATS_URL"]; got != "tls://nats.example.com:4222" {
			t.Errorf("%s: PARLEY_NATS_URL = %q", k, got)
		}
		if got := env["PARLEY_NATS_CA"]; got != "/etc/parley/nats/ca.crt" {
			t.Errorf("%s: PARLEY_NATS_CA = %q", k, got)
		}
		switch k {
		case "Deployment parley/presence":
			if got := env["PARLEY_REDIS_ADDR"]; got != "redis.example.com:6380" {
				t.Errorf("presence: PARLEY_REDIS_ADDR = %q", got)
			}
		case "Deployment parley/file", "Deployment parley-edge/gateway":
			if env["PARLEY_MINIO_ENDPOINT"] != "s3.eu-west-1.amazonaws.com:443" || env["PARLEY_MINIO_TLS"] != "true" || env["PARLEY_MINIO_REGION"] != "eu-west-1" {
				t.Errorf("%s: object store env = %v", k, env)
			}
		}
	}
	if deployments != 6 {
		t.Errorf("%d Deployments, want the 6 Parley ones", deployments)
	}
}

// containerEnv returns the literal env values of a Deployment's first container.
func containerEnv(o object) map[string]string {
	spec := o["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)
	c := spec["containers"].([]any)[0].(map[string]any)
	env := map[string]string{}
	for _, e := range c["env"].([]any) {
		m := e.(map[string]any)
		if v, ok := m["value"].(string); ok {
			env[m["name"].(string)] = v
		}
	}
	return env
}

// values.schema.json: a misspelled value is an error, not silently ignored.
func TestChartRejectsMisspelledValue(t *testing.T) {
	values := filepath.Join(t.TempDir(), "typo.yaml")
	if err := os.WriteFile(values, []byte("ingress:\n  enabeld: true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := render("../helm/parley", "parley", []string{values})
	if err == nil || !strings.Contains(err.Error(), "enabeld") {
		t.Fatalf("err = %v, want the schema to name the misspelled value", err)
	}
}

// The gateway's certificate from cert-manager, and a service without its
// autoscaler: a Certificate into the Secret the gateway mounts, and a fixed
// replica count where no HorizontalPodAutoscaler owns it.
func TestChartCertManagerAndFixedReplicas(t *testing.T) {
	values := filepath.Join(t.TempDir(), "values.yaml")
	err := os.WriteFile(values, []byte(`
gateway:
  tls:
    secretName: chat-tls
    certManager:
      enabled: true
      issuerRef: {name: internal-ca, kind: Issuer, group: cert-manager.io}
      dnsNames: [chat.example.org]
auth:
  replicas: 4
  autoscaling: {enabled: false}
`), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	rendered, err := render("../helm/parley", "parley", []string{values})
	if err != nil {
		t.Fatal(err)
	}
	objs, err := decode(rendered)
	if err != nil {
		t.Fatal(err)
	}
	byKey := map[string]object{}
	for _, o := range objs {
		byKey[key(o)] = o
	}
	cert, ok := byKey["Certificate parley-edge/gateway"]
	if !ok {
		t.Fatal("no Certificate parley-edge/gateway")
	}
	spec := cert["spec"].(map[string]any)
	issuer := spec["issuerRef"].(map[string]any)
	if spec["secretName"] != "chat-tls" || issuer["name"] != "internal-ca" || issuer["kind"] != "Issuer" || brief(spec["dnsNames"]) != `["chat.example.org"]` {
		t.Errorf("Certificate spec = %s", brief(spec))
	}
	gw := byKey["Deployment parley-edge/gateway"]
	vols := gw["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)["volumes"]
	if !strings.Contains(brief(vols), `"secretName":"chat-tls"`) {
		t.Errorf("gateway volumes = %s, want the Secret chat-tls", brief(vols))
	}
	if _, ok := byKey["HorizontalPodAutoscaler parley/auth"]; ok {
		t.Error("auth has an autoscaler with autoscaling.enabled false")
	}
	if got := byKey["Deployment parley/auth"]["spec"].(map[string]any)["replicas"]; got != float64(4) {
		t.Errorf("auth replicas = %v, want 4", got)
	}
	if _, ok := byKey["HorizontalPodAutoscaler parley/messaging"]; !ok {
		t.Error("messaging lost its autoscaler")
	}
}
