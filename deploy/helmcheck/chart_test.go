package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The real chart with an external NATS, Redis and object store: none of
// the bundled ones is rendered, and every deployable is pointed at the
// external ones.
func TestChartExternalStores(t *testing.T) {
	objs := renderChart(t, `
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
`)
	deployments := 0
	for k, o := range objs {
		for _, bundled := range []string{"/nats", "/redis", "/minio"} {
			if strings.HasSuffix(k, bundled) || strings.Contains(k, bundled+"-") && !strings.Contains(k, "-to-") || strings.HasPrefix(k, "Certificate") || strings.Contains(k, "Issuer ") {
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
		if got := env["PARLEY_NATS_CERT"]; got != "/etc/parley/nats/tls.crt" {
			t.Errorf("%s: PARLEY_NATS_CERT = %q", k, got)
		}
		if vols := asJSON(podSpec(o)["volumes"]); !strings.Contains(vols, `"secretName":"parley-nats-client"`) {
			t.Errorf("%s: volumes = %s, want the Secret parley-nats-client", k, vols)
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

// podSpec returns a workload's pod spec.
func podSpec(o object) map[string]any {
	return o["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)
}

// containerEnv returns the literal env values of a workload's first container.
func containerEnv(o object) map[string]string {
	c := podSpec(o)["containers"].([]any)[0].(map[string]any)
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
	byKey := renderChart(t, `
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
`)
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
	if !strings.Contains(asJSON(vols), `"secretName":"chat-tls"`) {
		t.Errorf("gateway volumes = %s, want the Secret chat-tls", asJSON(vols))
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

// asJSON is v as JSON, whole (brief cuts it).
func asJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprintf("%v", v)
	}
	return string(b)
}

// renderChart renders the real chart with the given values (YAML) and
// returns its objects by key.
func renderChart(t *testing.T, yaml string) map[string]object {
	t.Helper()
	values := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(values, []byte(yaml), 0o644); err != nil {
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
	m, err := byKey(objs, "the chart")
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// The bundled NATS with Secrets the operator made (deploy/nats-certs.sh)
// and no reloader: no cert-manager object at all, while NATS and every
// deployable still mount the same Secrets.
func TestChartNATSTLSWithoutCertManager(t *testing.T) {
	objs := renderChart(t, `
nats:
  tls:
    certManager: {enabled: false}
    reloader: {enabled: false}
`)
	for k := range objs {
		if strings.HasPrefix(k, "Certificate ") || strings.HasPrefix(k, "Issuer ") || strings.HasPrefix(k, "ClusterIssuer ") {
			t.Errorf("%s rendered with nats.tls.certManager.enabled false", k)
		}
	}
	nats := podSpec(objs["StatefulSet parley/nats"])
	if vols := asJSON(nats["volumes"]); !strings.Contains(vols, `"secretName":"parley-nats-server"`) || !strings.Contains(vols, `"secretName":"parley-nats-routes"`) {
		t.Errorf("NATS volumes = %s, want the server's and the routes' Secrets", vols)
	}
	if nats["shareProcessNamespace"] != nil || strings.Contains(asJSON(nats["containers"]), `"name":"reloader"`) {
		t.Errorf("NATS pod has the reloader (or its shared process namespace) with reloader.enabled false")
	}
	for k, ns := range map[string]string{"auth": "parley", "media-relay": "parley", "gateway": "parley-edge"} {
		o := objs["Deployment "+ns+"/"+k]
		if got := containerEnv(o)["PARLEY_NATS_KEY"]; got != "/etc/parley/nats/tls.key" {
			t.Errorf("%s: PARLEY_NATS_KEY = %q", k, got)
		}
		if vols := asJSON(podSpec(o)["volumes"]); !strings.Contains(vols, `"secretName":"parley-nats-`+k+`"`) {
			t.Errorf("%s: volumes = %s, want the Secret parley-nats-%s", k, vols, k)
		}
	}
	if vols := asJSON(podSpec(objs["DaemonSet parley-edge/rendezvous"])["volumes"]); !strings.Contains(vols, `"secretName":"parley-nats-rendezvous"`) {
		t.Errorf("rendezvous: volumes = %s, want the Secret parley-nats-rendezvous", vols)
	}
}

// cert-manager with another cluster resource namespace: the CA
// Certificate of the ClusterIssuer goes there.
func TestChartNATSCertManagerNamespace(t *testing.T) {
	objs := renderChart(t, `
nats:
  tls:
    certManager: {clusterResourceNamespace: security, duration: 720h, renewBefore: 240h}
`)
	if _, ok := objs["Certificate security/parley-internal-ca"]; !ok {
		t.Error("no Certificate security/parley-internal-ca")
	}
	if _, ok := objs["Certificate cert-manager/parley-internal-ca"]; ok {
		t.Error("the CA Certificate is still in cert-manager")
	}
	spec := objs["Certificate parley-edge/parley-nats-gateway"]["spec"].(map[string]any)
	if spec["duration"] != "720h" || spec["renewBefore"] != "240h" || spec["commonName"] != "gateway" {
		t.Errorf("gateway's client Certificate spec = %s", brief(spec))
	}
}

// An external NATS with a Secret per deployable holding only the CA and a
// .creds credential each: every deployable verifies the server with its
// own Secret's CA and authenticates with its own credential, without a
// client certificate.
func TestChartExternalNATSPerDeployable(t *testing.T) {
	objs := renderChart(t, `
nats:
  external:
    url: tls://nats.example.com:4222
    tlsSecret: nats-ca
    tlsSecrets: {auth: nats-ca-auth}
    clientCert: false
    credsSecret: nats-creds
    credsSecrets: {gateway: nats-creds-gateway, rendezvous: nats-creds-rdv}
`)
	for _, c := range []struct{ key, tls, creds string }{
		{"Deployment parley/auth", "nats-ca-auth", "nats-creds"},
		{"Deployment parley/messaging", "nats-ca", "nats-creds"},
		{"Deployment parley-edge/gateway", "nats-ca", "nats-creds-gateway"},
		{"DaemonSet parley-edge/rendezvous", "nats-ca", "nats-creds-rdv"},
	} {
		o, ok := objs[c.key]
		if !ok {
			t.Errorf("no %s", c.key)
			continue
		}
		env := containerEnv(o)
		if env["PARLEY_NATS_CA"] != "/etc/parley/nats/ca.crt" || env["PARLEY_NATS_CREDS"] != "/etc/parley/nats-creds/user.creds" {
			t.Errorf("%s: env = %v, want PARLEY_NATS_CA and PARLEY_NATS_CREDS", c.key, env)
		}
		if _, ok := env["PARLEY_NATS_CERT"]; ok {
			t.Errorf("%s: PARLEY_NATS_CERT set with clientCert false", c.key)
		}
		spec := podSpec(o)
		vols := asJSON(spec["volumes"])
		if !strings.Contains(vols, `"secretName":"`+c.tls+`"`) || !strings.Contains(vols, `"secretName":"`+c.creds+`"`) {
			t.Errorf("%s: volumes = %s, want the Secrets %s and %s", c.key, vols, c.tls, c.creds)
		}
		if sc := spec["securityContext"].(map[string]any); sc["fsGroup"] != float64(65532) {
			t.Errorf("%s: fsGroup = %v, want 65532 to read the 0440 Secrets", c.key, sc["fsGroup"])
		}
	}
}

// An external NATS without TLS Secrets or credentials (a tls:// URL with a
// public CA, or a plain one): the URL alone, no volume, and no fsGroup
// where the pod mounts nothing.
func TestChartExternalNATSPlain(t *testing.T) {
	objs := renderChart(t, `
nats:
  external: {url: "nats://nats.example.com:4222"}
`)
	o := objs["Deployment parley/messaging"]
	env := containerEnv(o)
	for _, v := range []string{"PARLEY_NATS_CA", "PARLEY_NATS_CERT", "PARLEY_NATS_KEY", "PARLEY_NATS_CREDS"} {
		if _, ok := env[v]; ok {
			t.Errorf("messaging: %s set without a Secret", v)
		}
	}
	spec := podSpec(o)
	if spec["volumes"] != nil || spec["securityContext"].(map[string]any)["fsGroup"] != nil {
		t.Errorf("messaging: volumes %s, securityContext %s, want neither volumes nor fsGroup", brief(spec["volumes"]), brief(spec["securityContext"]))
	}
}
