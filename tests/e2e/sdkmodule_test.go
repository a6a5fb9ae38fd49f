package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/modfile"
	"golang.org/x/mod/module"
	modzip "golang.org/x/mod/zip"

	"github.com/parleychat/parley/clients/parley"
)

// The published Go modules: what a third party puts in its go.mod to write
// a client. Everything else in the repository is a deployable or a test.
const (
	sdkModule      = "github.com/parleychat/parley/clients/parley"
	protocolModule = "github.com/parleychat/parley/protocol"
)

// What a client program must never pull in by depending on the SDK: the
// server side, its stores, and the terminal client's UI libraries.
var serverOnlyModules = []string{
	"github.com/parleychat/parley/libs",
	"github.com/parleychat/parley/gateway",
	"github.com/parleychat/parley/standalone",
	"github.com/parleychat/parley/services/",
	"github.com/parleychat/parley/clients ", // the terminal client's module (space: not clients/parley)
	"github.com/nats-io/",
	"github.com/minio/",
	"github.com/gofiber/",
	"github.com/valyala/",
	"github.com/redis/",
	"github.com/prometheus/",
	"github.com/charmbracelet/",
}

// A program outside this repository gets the SDK with `go get` at its
// released version and builds against it, with no replace directive and
// no workspace: the published modules are served from a module proxy
// built from this checkout (the version the SDK announces, parley.Version),
// everything else from the local module cache, which is a proxy too, or
// through the machine's GOPROXY when the cache lacks them. The program's
// module graph holds no server module; built, it registers on a running
// parleyd, sends to the public room and reads the message back.
func TestSDKModuleBuildsOutsideTheRepository(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	version := "v" + parley.Version
	sdkMod := readModFile(t, filepath.Join(root, "clients/parley/go.mod"))
	protoVersion := requiredVersion(sdkMod, protocolModule)
	if protoVersion == "" {
		t.Fatalf("clients/parley/go.mod does not require %s", protocolModule)
	}
	if len(sdkMod.Replace) > 0 {
		t.Errorf("clients/parley/go.mod has replace directives %v: a published module must resolve without them", sdkMod.Replace)
	}
	// Every module of the checkout that uses the SDK requires the version
	// it announces, so the workspace builds what a user would get.
	for _, m := range []string{"clients", "tests", "standalone", "bench"} {
		if v := requiredVersion(readModFile(t, filepath.Join(root, m, "go.mod")), sdkModule); v != "" && v != version {
			t.Errorf("%s/go.mod requires %s %s, the SDK announces %s", m, sdkModule, v, version)
		}
	}

	proxy := t.TempDir()
	publish(t, proxy, protocolModule, protoVersion, filepath.Join(root, "protocol"))
	publish(t, proxy, sdkModule, version, filepath.Join(root, "clients/parley"))

	cache := strings.TrimSpace(goEnv(t, "GOMODCACHE"))
	app := t.TempDir()
	writeFile(t, filepath.Join(app, "go.mod"), "module example.com/parleyhello\n\ngo 1.26.0\n")
	writeFile(t, filepath.Join(app, "main.go"), helloProgram)
	// The SDK's own go.sum vouches for its third-party requirements, so no
	// checksum database is consulted for them; this repository's modules
	// are not in the public one.
	sum, err := os.ReadFile(filepath.Join(root, "clients/parley/go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(app, "go.sum"), string(sum))
	// Third-party modules come from the local module cache when it has
	// them, else from the machine's own proxy: a fresh machine's cache
	// holds only the versions the workspace builds with, and the SDK alone
	// may select older ones (x/net, x/sys). The published modules are
	// found in the first proxy, so no later one is asked for them.
	proxies := "file://" + filepath.ToSlash(proxy) + ",file://" + filepath.ToSlash(filepath.Join(cache, "cache", "download"))
	if p := strings.TrimSpace(goEnv(t, "GOPROXY")); p != "" && p != "off" {
		proxies += "," + p
	}
	env := append(os.Environ(),
		"GOWORK=off",
		"GOFLAGS=-mod=mod -buildvcs=false",
		"GOPROXY="+proxies,
		"GOMODCACHE="+filepath.Join(t.TempDir(), "modcache"), // fresh: no stale copy of the published versions
		"GONOSUMDB=github.com/parleychat/parley",
		"GOTOOLCHAIN=local",
	)
	goCmd(t, app, env, "get", sdkModule+"@"+version)
	goCmd(t, app, env, "build", "-o", filepath.Join(app, "hello"), ".")

	appMod := readModFile(t, filepath.Join(app, "go.mod"))
	if v := requiredVersion(appMod, sdkModule); v != version {
		t.Errorf("go get recorded %s %q, want %s", sdkModule, v, version)
	}
	// The modules whose packages the program is built from, and those its
	// go.mod requires (indirect ones too).
	graph := goCmd(t, app, env, "list", "-deps", "-f", "{{with .Module}}{{.Path}} {{.Version}}{{end}}", ".")
	for _, r := range appMod.Require {
		graph += r.Mod.Path + " " + r.Mod.Version + "\n"
	}
	for _, line := range strings.Split(graph, "\n") {
		for _, bad := range serverOnlyModules {
			if strings.HasPrefix(line+" ", bad) {
				t.Errorf("a program using the SDK depends on %q (from %s)", line, bad)
			}
		}
	}
	if !strings.Contains(graph, protocolModule+" "+protoVersion) {
		t.Errorf("module graph lacks %s %s:\n%s", protocolModule, protoVersion, graph)
	}

	_, tcp, _ := startParleyd(t, t.TempDir())
	user := uniq("hello")
	out, err := exec.Command(filepath.Join(app, "hello"), "tcp://"+tcp, user).CombinedOutput()
	if err != nil {
		t.Fatalf("the program against parleyd: %v\n%s", err, out)
	}
	if want := "registered " + user + "\nread back: hello from outside\n"; string(out) != want {
		t.Fatalf("program output %q, want %q", out, want)
	}
}

// helloProgram is the third party's program: only the SDK's public API.
const helloProgram = `package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/parleychat/parley/clients/parley"
)

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := parley.Dial(ctx, os.Args[1], parley.WithPresenceFeed(false))
	if err != nil {
		fmt.Fprintln(os.Stderr, "dial:", err)
		os.Exit(1)
	}
	defer c.Close()
	s, err := c.Register(ctx, os.Args[2], "correct horse battery staple")
	if err != nil {
		fmt.Fprintln(os.Stderr, "register:", err)
		os.Exit(1)
	}
	fmt.Println("registered", s.Username)
	sent, err := c.Send(ctx, parley.PublicRoom, "hello from outside")
	if err != nil {
		fmt.Fprintln(os.Stderr, "send:", err)
		os.Exit(1)
	}
	msgs, _, err := c.History(ctx, parley.PublicRoom, sent.Seq+1, 1)
	if err != nil || len(msgs) != 1 || msgs[0].Seq != sent.Seq {
		fmt.Fprintln(os.Stderr, "history:", msgs, err)
		os.Exit(1)
	}
	fmt.Println("read back:", msgs[0].Text)
}
`

// publish writes module path@version, made from dir, into the file-system
// module proxy at proxy (the layout GOPROXY=file:// reads: list, .info,
// .mod, .zip).
func publish(t *testing.T, proxy, path, version, dir string) {
	t.Helper()
	esc, err := module.EscapePath(path)
	if err != nil {
		t.Fatal(err)
	}
	at := filepath.Join(proxy, filepath.FromSlash(esc), "@v")
	if err := os.MkdirAll(at, 0o755); err != nil {
		t.Fatal(err)
	}
	zf, err := os.Create(filepath.Join(at, version+".zip"))
	if err != nil {
		t.Fatal(err)
	}
	if err := modzip.CreateFromDir(zf, module.Version{Path: path, Version: version}, dir); err != nil {
		t.Fatalf("zip %s: %v", path, err)
	}
	if err := zf.Close(); err != nil {
		t.Fatal(err)
	}
	mod, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(at, version+".mod"), string(mod))
	info, _ := json.Marshal(struct {
		Version string
		Time    time.Time
	}{version, time.Now().UTC()})
	writeFile(t, filepath.Join(at, version+".info"), string(info))
	writeFile(t, filepath.Join(at, "list"), version+"\n")
}

func readModFile(t *testing.T, path string) *modfile.File {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := modfile.Parse(path, data, nil)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func requiredVersion(f *modfile.File, path string) string {
	i := slices.IndexFunc(f.Require, func(r *modfile.Require) bool { return r.Mod.Path == path })
	if i < 0 {
		return ""
	}
	return f.Require[i].Mod.Version
}

func goEnv(t *testing.T, key string) string {
	t.Helper()
	out, err := exec.Command(goTool(), "env", key).Output()
	if err != nil {
		t.Fatalf("go env %s: %v", key, err)
	}
	return string(out)
}

func goCmd(t *testing.T, dir string, env []string, args ...string) string {
	t.Helper()
	cmd := exec.Command(goTool(), args...)
	cmd.Dir, cmd.Env = dir, env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// goTool is the go command of the toolchain running the tests.
func goTool() string {
	if p := filepath.Join(runtime.GOROOT(), "bin", "go"); fileExists(p) {
		return p
	}
	return "go"
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}
