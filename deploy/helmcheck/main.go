// Command helmcheck renders Parley's Helm chart and compares it with a
// kustomize render, object by object: deploy/check.sh runs it on the chart's
// defaults against `kubectl kustomize k8s/base`, and on
// ci/production-values.yaml against k8s/overlays/production. The kustomize
// base is the reference; the chart must render the same objects with the
// same content.
//
//	helmcheck -chart DIR -kustomized FILE [-against NAME] [-f VALUES]... [-out FILE] [-release NAME]
//
// The chart is rendered with the helm library (helm.sh/helm/v4: its loader,
// values coalescing with values.schema.json validation, and template engine),
// as `helm template` would, without a helm binary or a cluster.
//
// Before comparing (the normalization):
//   - Helm's conventional labels (helm.sh/chart, app.kubernetes.io/managed-by,
//     instance, version) are dropped from the chart's objects and pod
//     templates, and checksum/* annotations from both;
//   - kustomize's generated ConfigMaps and Secrets lose their name hash
//     ("nats-config-727g6dtg57" becomes "nats-config", with every reference to
//     it) when the chart has one of the unhashed name;
//   - both sides are decoded into JSON values, so key order, quoting style,
//     flow versus block style and comments do not count; list order does.
//
// Objects are matched by kind, namespace and name. Exit status 1 lists every
// object on one side only and, per object, every differing field by path
// (lists of named entries by name: containers[gateway].env[PARLEY_NATS_URL]).
//
// It is its own module outside go.work (GOWORK=off), like deploy/yamlcheck:
// the helm library's dependencies never touch the services'.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// errDiffer is returned when the renders differ; the differences are printed.
var errDiffer = errors.New("the Helm chart and the kustomize render differ")

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "helmcheck:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("helmcheck", flag.ContinueOnError)
	chart := fs.String("chart", "", "the chart's directory")
	kustomized := fs.String("kustomized", "", "the kustomize render to compare with (kubectl kustomize output)")
	out := fs.String("out", "", "also write the Helm render to this file")
	release := fs.String("release", "parley", "the release name to render with")
	against := fs.String("against", "", "what the kustomize render is of, for the messages (default: the -kustomized file)")
	var values stringList
	fs.Var(&values, "f", "a values file over the chart's values.yaml (repeatable; later ones win)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *chart == "" || *kustomized == "" || fs.NArg() > 0 {
		return errors.New("usage: helmcheck -chart DIR -kustomized FILE [-f VALUES]... [-out FILE] [-release NAME]")
	}
	rendered, err := render(*chart, *release, values)
	if err != nil {
		return err
	}
	if *out != "" {
		if err := os.WriteFile(*out, []byte(rendered), 0o644); err != nil {
			return err
		}
	}
	kb, err := os.ReadFile(*kustomized)
	if err != nil {
		return err
	}
	kobjs, err := decode(string(kb))
	if err != nil {
		return fmt.Errorf("%s: %w", *kustomized, err)
	}
	hobjs, err := decode(rendered)
	if err != nil {
		return fmt.Errorf("helm render of %s: %w", *chart, err)
	}
	diffs, err := compare(kobjs, hobjs)
	if err != nil {
		return err
	}
	kname := *kustomized
	if *against != "" {
		kname = *against
	}
	label := *chart
	if len(values) > 0 {
		label += " -f " + strings.Join(values, " -f ")
	}
	if len(diffs) == 0 {
		fmt.Fprintf(stdout, "%s: the same %d objects as %s\n", label, len(kobjs), kname)
		return nil
	}
	fmt.Fprintf(stdout, "%s against %s: %d object(s) differ\n", label, kname, len(diffs))
	for _, d := range diffs {
		fmt.Fprintf(stdout, "%s:\n", d.Key)
		for _, l := range d.Lines {
			fmt.Fprintf(stdout, "    %s\n", l)
		}
	}
	return errDiffer
}
