// Command protodoc writes the message reference of docs/protocol.md (§13)
// from the compiled schema (libs/proto/parleyv1), between the document's
// generated-section markers, and checks the §4 and §7 tables against the
// schema. `make generate` runs it; with -check it changes nothing and
// exits 1 when the document is stale.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/parleychat/parley/libs/proto/protodoc"
	"github.com/parleychat/parley/protocol/parleyv1"
)

func main() {
	path := flag.String("doc", "../docs/protocol.md", "the protocol document")
	check := flag.Bool("check", false, "only check: exit 1 when the document differs from the schema")
	flag.Parse()
	if err := run(*path, *check); err != nil {
		fmt.Fprintln(os.Stderr, "protodoc:", err)
		os.Exit(1)
	}
}

func run(path string, check bool) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	doc := string(b)
	fd := parleyv1.File_parley_v1_parley_proto
	out, err := protodoc.Replace(doc, protodoc.Reference(fd))
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	errs := append(protodoc.CheckBodyTable(doc, fd), protodoc.CheckErrorTable(doc, fd)...)
	for _, e := range errs {
		fmt.Fprintf(os.Stderr, "%s: %v (edit it by hand)\n", path, e)
	}
	switch {
	case out == doc:
	case check:
		errs = append(errs, fmt.Errorf("%s: the message reference (§13) is stale: run make generate", path))
	default:
		if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
			return err
		}
		fmt.Printf("%s: message reference regenerated\n", path)
	}
	if len(errs) > 0 {
		return fmt.Errorf("%d problems", len(errs))
	}
	return nil
}
