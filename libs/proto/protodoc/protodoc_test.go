package protodoc

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/parleychat/parley/protocol/parleyv1"
)

// docPath is docs/protocol.md from this package's folder.
var docPath = filepath.Join("..", "..", "..", "docs", "protocol.md")

func readDoc(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(docPath)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The document's message reference (§13) is what the schema gives, and its
// tables of body members (§4) and error codes (§7) list exactly the
// schema's.
func TestProtocolDocMatchesSchema(t *testing.T) {
	doc := readDoc(t)
	fd := parleyv1.File_parley_v1_parley_proto
	got, err := Extract(doc)
	if err != nil {
		t.Fatalf("%s: %v", docPath, err)
	}
	if want := Reference(fd); got != want {
		gl, wl := strings.Split(got, "\n"), strings.Split(want, "\n")
		for i := range max(len(gl), len(wl)) {
			var g, w string
			if i < len(gl) {
				g = gl[i]
			}
			if i < len(wl) {
				w = wl[i]
			}
			if g != w {
				t.Fatalf("%s §13 differs from the schema (run make generate); first at line %d of the reference:\n doc:    %q\n schema: %q", docPath, i+1, g, w)
			}
		}
	}
	for _, err := range append(CheckBodyTable(doc, fd), CheckErrorTable(doc, fd)...) {
		t.Errorf("%s: %v", docPath, err)
	}
}

// A document whose tables disagree with the schema is caught.
func TestCheckTablesFindsDifferences(t *testing.T) {
	doc := readDoc(t)
	fd := parleyv1.File_parley_v1_parley_proto
	tests := []struct {
		name     string
		old, new string
		check    func(string, protoreflect.FileDescriptor) []error
		want     string
	}{
		{"a body member left out", "| 37 | `file_event` (FileEvent) | S→C | event (§18) |\n", "",
			CheckBodyTable, "§4 body table lacks the row 37 `file_event` (FileEvent)"},
		{"a body member with the wrong number", "| 61 | `files_reply`", "| 62 | `files_reply`",
			CheckBodyTable, "has the row 62 `files_reply` (FilesReply), which the schema does not"},
		{"a body member with the wrong type", "`conversation` (Conversation)", "`conversation` (Conversations)",
			CheckBodyTable, "has the row 26 `conversation` (Conversations)"},
		{"an error code left out", "| 47 | `QUOTA_EXCEEDED`", "| 47 | QUOTA_EXCEEDED",
			CheckErrorTable, "§7 error table lacks the row 47 `QUOTA_EXCEEDED`"},
		{"an error code misnamed", "| 46 | `CONFLICT`", "| 46 | `CONFLICTED`",
			CheckErrorTable, "has the row 46 `CONFLICTED`, which the schema does not"},
		{"an error code twice", "| 46 | `CONFLICT` |", "| 46 | `CONFLICT` | x |\n| 46 | `CONFLICT` |",
			CheckErrorTable, "has the row 46 `CONFLICT` twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !strings.Contains(doc, tt.old) {
				t.Fatalf("the document has no %q to change", tt.old)
			}
			errs := tt.check(strings.Replace(doc, tt.old, tt.new, 1), fd)
			found := false
			for _, err := range errs {
				found = found || strings.Contains(err.Error(), tt.want)
			}
			if !found {
				t.Errorf("errors %v, want one containing %q", errs, tt.want)
			}
		})
	}
}

// The rendering of every kind of field: scalars, repeated, optional, map,
// oneof, enums and messages (nested ones included), empty messages, and
// wrapping of long entries.
func TestReference(t *testing.T) {
	const schema = `
name: "t.proto" package: "t.v1" syntax: "proto3"
message_type {
  name: "Outer"
  field { name: "id" number: 1 label: LABEL_OPTIONAL type: TYPE_UINT64 }
  field { name: "tags" number: 2 label: LABEL_REPEATED type: TYPE_STRING }
  field { name: "after" number: 3 label: LABEL_OPTIONAL type: TYPE_UINT64 oneof_index: 1 proto3_optional: true }
  field { name: "kind" number: 4 label: LABEL_OPTIONAL type: TYPE_ENUM type_name: ".t.v1.Outer.Kind" }
  field { name: "a" number: 5 label: LABEL_OPTIONAL type: TYPE_MESSAGE type_name: ".t.v1.Empty" oneof_index: 0 }
  field { name: "b" number: 6 label: LABEL_OPTIONAL type: TYPE_MESSAGE type_name: ".t.v1.Outer.Inner" oneof_index: 0 }
  field { name: "counts" number: 7 label: LABEL_REPEATED type: TYPE_MESSAGE type_name: ".t.v1.Outer.CountsEntry" }
  field { name: "color" number: 8 label: LABEL_OPTIONAL type: TYPE_ENUM type_name: ".t.v1.Color" }
  field { name: "a_rather_long_field_name_to_wrap_the_line" number: 9 label: LABEL_OPTIONAL type: TYPE_BYTES }
  nested_type { name: "Inner" field { name: "ok" number: 1 label: LABEL_OPTIONAL type: TYPE_BOOL } }
  nested_type {
    name: "CountsEntry" options { map_entry: true }
    field { name: "key" number: 1 label: LABEL_OPTIONAL type: TYPE_STRING }
    field { name: "value" number: 2 label: LABEL_OPTIONAL type: TYPE_INT32 }
  }
  enum_type { name: "Kind" value { name: "KIND_UNSPECIFIED" number: 0 } value { name: "KIND_A" number: 1 } }
  oneof_decl { name: "body" }
  oneof_decl { name: "_after" }
}
message_type { name: "Empty" field { name: "c" number: 1 label: LABEL_OPTIONAL type: TYPE_ENUM type_name: ".t.v1.Color" } }
enum_type { name: "Color" value { name: "COLOR_UNSPECIFIED" number: 0 } value { name: "COLOR_RED" number: 7 } }
enum_type { name: "Unused" value { name: "UNUSED_UNSPECIFIED" number: 0 } }
`
	var fdp descriptorpb.FileDescriptorProto
	if err := prototext.Unmarshal([]byte(schema), &fdp); err != nil {
		t.Fatal(err)
	}
	fd, err := protodesc.NewFile(&fdp, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := "```\n" +
		"Outer           { uint64 id [1]; repeated string tags [2]; optional uint64 after [3]; Kind kind [4];\n" +
		"                  oneof body { Empty a [5]; Inner b [6]; } map<string, int32> counts [7]; Color color [8];\n" +
		"                  bytes a_rather_long_field_name_to_wrap_the_line [9]; }\n" +
		"enum Outer.Kind { KIND_UNSPECIFIED = 0; KIND_A = 1; }\n" +
		"Outer.Inner     { bool ok [1]; }\n" +
		"enum Color      { COLOR_UNSPECIFIED = 0; COLOR_RED = 7; }\n" +
		"Empty           { Color c [1]; }\n" +
		"enum Unused     { UNUSED_UNSPECIFIED = 0; }\n" +
		"```\n"
	if got := Reference(fd); got != want {
		t.Errorf("Reference:\n%s\nwant:\n%s", got, want)
	}
}

func TestReplace(t *testing.T) {
	doc := "# x\n\n" + Begin + "\nold\n" + End + "\n\nafter\n"
	got, err := Replace(doc, "new\n")
	if err != nil || got != "# x\n\n"+Begin+"\nnew\n"+End+"\n\nafter\n" {
		t.Errorf("Replace = %q, %v", got, err)
	}
	if ref, err := Extract(got); err != nil || ref != "new\n" {
		t.Errorf("Extract = %q, %v", ref, err)
	}
	if _, err := Replace("no markers", "x"); err != ErrNoMarkers {
		t.Errorf("Replace without markers: %v", err)
	}
}
