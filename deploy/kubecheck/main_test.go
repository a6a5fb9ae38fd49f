package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func external(t *testing.T) map[string][]string {
	t.Helper()
	f, err := os.Open("testdata/secrets.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := secretsTable(f)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// testdata/good.yaml uses every kind the checker knows, correctly: no
// problem may be reported (a check that fires on correct manifests is as
// bad as one that never fires).
func TestGoodManifestsPass(t *testing.T) {
	problems, summary, err := checkFile("testdata/good.yaml", external(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(problems) > 0 {
		t.Errorf("problems in a correct render:\n%s", strings.Join(problems, "\n"))
	}
	if !strings.Contains(summary, "18 objects") {
		t.Errorf("summary %q: want 18 objects decoded", summary)
	}
}

// Each testdata/broken/*.yaml holds one kind of mistake and says, in
// "# want: TEXT" lines, every problem it must produce: each one is
// reported (TEXT is part of the message) and nothing else is.
func TestBrokenManifestsAreCaught(t *testing.T) {
	files, err := filepath.Glob("testdata/broken/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".yaml"), func(t *testing.T) {
			text, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			var wants []string
			for l := range strings.SplitSeq(string(text), "\n") {
				if w, ok := strings.CutPrefix(l, "# want: "); ok {
					wants = append(wants, w)
				}
			}
			if len(wants) == 0 {
				t.Fatal("fixture has no '# want:' line")
			}
			problems, _, err := checkFile(file, external(t))
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range wants {
				if !slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, w) }) {
					t.Errorf("not reported: %s", w)
				}
			}
			if len(problems) != len(wants) {
				t.Errorf("%d problems, want %d:\n%s", len(problems), len(wants), strings.Join(problems, "\n"))
			}
			for _, p := range problems {
				if !strings.HasPrefix(p, file+": ") {
					t.Errorf("problem does not start with the file name: %s", p)
				}
			}
		})
	}
}

// deploy/README.md's table is what check.sh passes: its Secrets and keys
// are read (remarks in parentheses are not keys).
func TestSecretsTableOfDeployReadme(t *testing.T) {
	f, err := os.Open("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := secretsTable(f)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		"parley-minio":       {"access-key", "secret-key"},
		"parley-gateway-tls": {"tls.crt", "tls.key"},
	}
	for name, keys := range want {
		if got := m[name]; !slices.Equal(got, keys) {
			t.Errorf("%s: keys %q, want %q", name, got, keys)
		}
	}
	// A row naming several Secrets gives each the row's keys.
	for _, name := range []string{"parley-nats-gateway", "parley-nats-rendezvous", "parley-nats-auth", "parley-nats-media-relay"} {
		if got := m[name]; !slices.Equal(got, []string{"tls.crt", "tls.key", "ca.crt"}) {
			t.Errorf("%s: keys %q, want tls.crt, tls.key, ca.crt", name, got)
		}
	}
	if _, ok := m["parley-auth"]; !ok {
		t.Errorf("parley-auth missing from %v", m)
	}
}

func TestSecretsTableMissing(t *testing.T) {
	if _, err := secretsTable(strings.NewReader("# no table here\n")); err == nil {
		t.Error("a document without the table was accepted")
	}
}
