// Command kubecheck validates rendered Kubernetes manifests (the output of
// `kubectl kustomize` or `helm template`) the way an API server would, and
// checks that their objects fit together, without a cluster:
//
//   - every document decodes into its Go API type (k8s.io/api, Prometheus
//     Operator's monitoring.coreos.com/v1, cert-manager.io/v1, Gateway API)
//     with unknown, misspelled (names are case-sensitive) and duplicate
//     fields rejected; an unknown apiVersion/kind is an error;
//   - names and labels are valid; a workload's selector matches its pods;
//   - a probe's named port, a Service's targetPort (name or number), a
//     NetworkPolicy's named port, an Ingress backend's Service port and a
//     ServiceMonitor's endpoint port exist;
//   - every Service, PodDisruptionBudget, NetworkPolicy and ServiceMonitor
//     selector selects something, and every HorizontalPodAutoscaler's
//     scaleTargetRef and Certificate's Issuer exists (a ClusterIssuer is
//     the cluster's, not ours to ship);
//   - volumes, volumeMounts, env and envFrom name Secrets, ConfigMaps (and
//     keys) and PersistentVolumeClaims that exist in the render, or, for
//     Secrets, are created by cert-manager or listed in the operator's
//     Secrets table (-secrets deploy/README.md).
//
// Each FILE is one render: references resolve within it.
//
// usage: kubecheck [-secrets README.md] FILE...
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strings"
)

func main() {
	secretsDoc := flag.String("secrets", "", "markdown file whose table headed '| Secret | keys |' lists the Secrets the operator creates (name and keys in backticks)")
	quiet := flag.Bool("q", false, "print problems only")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: kubecheck [-secrets README.md] [-q] FILE...")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() == 0 {
		flag.Usage()
		os.Exit(2)
	}
	external := map[string][]string{}
	if *secretsDoc != "" {
		f, err := os.Open(*secretsDoc)
		if err != nil {
			fmt.Fprintln(os.Stderr, "kubecheck:", err)
			os.Exit(2)
		}
		external, err = secretsTable(f)
		f.Close()
		if err != nil {
			fmt.Fprintf(os.Stderr, "kubecheck: %s: %v\n", *secretsDoc, err)
			os.Exit(2)
		}
	}
	failed := false
	for _, file := range flag.Args() {
		problems, summary, err := checkFile(file, external)
		if err != nil {
			fmt.Fprintln(os.Stderr, "kubecheck:", err)
			os.Exit(2)
		}
		for _, p := range problems {
			fmt.Println(p)
		}
		if len(problems) > 0 {
			failed = true
		} else if !*quiet {
			fmt.Printf("ok  %s: %s\n", file, summary)
		}
	}
	if failed {
		os.Exit(1)
	}
}

// checkFile decodes and checks one render; summary counts its kinds.
func checkFile(file string, external map[string][]string) (problems []string, summary string, err error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, "", err
	}
	defer f.Close()
	return checkStream(file, f, external)
}

func checkStream(file string, r io.Reader, external map[string][]string) ([]string, string, error) {
	objs, problems := decodeAll(file, r)
	var typed []*object
	counts := map[string]int{}
	for _, o := range objs {
		if o.typed != nil {
			typed = append(typed, o)
		}
		counts[o.gvk.Kind]++
	}
	problems = append(problems, check(typed, external)...)
	var kinds []string
	for k := range counts {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for i, k := range kinds {
		kinds[i] = fmt.Sprintf("%d %s", counts[k], k)
	}
	return problems, fmt.Sprintf("%d objects (%s)", len(objs), strings.Join(kinds, ", ")), nil
}

var backticked = regexp.MustCompile("`([^`]+)`")
var parenthesized = regexp.MustCompile(`\([^)]*\)`)

// secretsTable reads the markdown table whose header row starts
// "| Secret |" and has a "keys" column: the first cell of each row names
// one or more Secrets in backticks, the keys column their keys in
// backticks (words in parentheses are remarks).
func secretsTable(r io.Reader) (map[string][]string, error) {
	out := map[string][]string{}
	sc := bufio.NewScanner(r)
	in := false
	keysCol := 0 // the column headed "keys" (a "namespace" column may come first)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		cells := strings.Split(strings.Trim(line, "|"), "|")
		switch {
		case !in && len(cells) >= 2 && strings.TrimSpace(cells[0]) == "Secret":
			for i, c := range cells {
				if strings.TrimSpace(c) == "keys" {
					in, keysCol = true, i
					break
				}
			}
		case in && !strings.HasPrefix(line, "|"):
			in = false
		case in && len(cells) > keysCol:
			names := backticked.FindAllStringSubmatch(parenthesized.ReplaceAllString(cells[0], ""), -1)
			if names == nil {
				continue // the |---| row
			}
			var keys []string
			for _, m := range backticked.FindAllStringSubmatch(parenthesized.ReplaceAllString(cells[keysCol], ""), -1) {
				keys = append(keys, m[1])
			}
			for _, name := range names {
				out[name[1]] = keys
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no table with a '| Secret | ... | keys |' header")
	}
	return out, nil
}
