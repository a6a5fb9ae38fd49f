package parley

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/parleychat/parley/protocol/parleyv1"
)

// The generated packages' import paths, taken from the packages
// themselves so that they follow them if they move.
var (
	schemaPkg  = reflect.TypeFor[parleyv1.Frame]().PkgPath()                           // the protocol's schema
	runtimePkg = path.Dir(path.Dir(reflect.TypeFor[protoreflect.Message]().PkgPath())) // google.golang.org/protobuf
)

// generatedPkg reports whether an import path is generated protobuf code
// (the protocol's schema) or the protobuf runtime.
func generatedPkg(importPath string) bool {
	return importPath == schemaPkg || importPath == runtimePkg || strings.HasPrefix(importPath, runtimePkg+"/")
}

// apiLeaks lists what the exported API of a package's files (test files
// excluded) says of generated types, as "Decl: pkg.Name". The API is what
// go doc shows: exported functions, methods and types, the exported fields
// and methods of every type (an unexported type's are reachable through
// the values the API hands out), and exported variables and constants with
// their initialisers.
func apiLeaks(files []*ast.File) []string {
	var leaks []string
	for _, f := range files {
		imports := map[string]string{} // local name -> import path
		for _, im := range f.Imports {
			p, _ := strconv.Unquote(im.Path.Value)
			name := path.Base(p)
			if im.Name != nil {
				name = im.Name.Name
			}
			imports[name] = p
		}
		check := func(decl string, nodes ...ast.Node) {
			for _, n := range nodes {
				if n == nil || reflect.ValueOf(n).IsNil() {
					continue
				}
				ast.Inspect(n, func(n ast.Node) bool {
					if sel, ok := n.(*ast.SelectorExpr); ok {
						if x, ok := sel.X.(*ast.Ident); ok && generatedPkg(imports[x.Name]) {
							leaks = append(leaks, decl+": "+x.Name+"."+sel.Sel.Name)
						}
					}
					return true
				})
			}
		}
		for _, d := range f.Decls {
			switch d := d.(type) {
			case *ast.FuncDecl:
				if !d.Name.IsExported() {
					continue
				}
				name := d.Name.Name
				if d.Recv != nil {
					name = receiverName(d.Recv.List[0].Type) + "." + name
				}
				check(name, d.Recv, d.Type)
			case *ast.GenDecl:
				for _, s := range d.Specs {
					switch s := s.(type) {
					case *ast.TypeSpec:
						name := s.Name.Name
						if s.Name.IsExported() {
							check(name, s.TypeParams)
						}
						switch t := s.Type.(type) {
						case *ast.StructType:
							checkMembers(name, t.Fields, check)
						case *ast.InterfaceType:
							checkMembers(name, t.Methods, check)
						default:
							if s.Name.IsExported() {
								check(name, t)
							}
						}
					case *ast.ValueSpec:
						for _, n := range s.Names {
							if n.IsExported() {
								check(n.Name, s.Type)
								for _, v := range s.Values {
									check(n.Name, v)
								}
							}
						}
					}
				}
			}
		}
	}
	return leaks
}

// checkMembers checks a struct's or interface's exported members and its
// embedded ones (whose members are promoted).
func checkMembers(typeName string, fields *ast.FieldList, check func(string, ...ast.Node)) {
	for _, fl := range fields.List {
		if len(fl.Names) == 0 {
			check(typeName, fl.Type)
			continue
		}
		for _, n := range fl.Names {
			if n.IsExported() {
				check(typeName+"."+n.Name, fl.Type)
			}
		}
	}
}

func receiverName(t ast.Expr) string {
	for {
		switch x := t.(type) {
		case *ast.StarExpr:
			t = x.X
		case *ast.IndexExpr:
			t = x.X
		case *ast.IndexListExpr:
			t = x.X
		case *ast.Ident:
			return x.Name
		default:
			return "?"
		}
	}
}

// TestAPIHasNoGeneratedTypes: the SDK's exported API speaks in the SDK's
// own types (Message, FileInfo, Code, Welcome, ...) and converts the wire's
// at the edge, so an application never imports the protobuf schema or
// runtime, and the schema can change without breaking it.
func TestAPIHasNoGeneratedTypes(t *testing.T) {
	names, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	var files []*ast.File
	exported := map[string]bool{}
	for _, name := range names {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
		for _, d := range f.Decls {
			if fd, ok := d.(*ast.FuncDecl); ok && fd.Recv == nil && fd.Name.IsExported() {
				exported[fd.Name.Name] = true
			}
		}
	}
	// Not vacuous: these are the package's sources.
	if !exported["Dial"] || len(files) < 10 {
		t.Fatalf("read %d files without Dial: not the SDK's sources", len(files))
	}
	for _, leak := range apiLeaks(files) {
		t.Errorf("the exported API mentions a generated type: %s", leak)
	}
}

// TestAPILeaks: the check above finds a generated type wherever the
// exported API can show one, and only there.
func TestAPILeaks(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string
	}{
		{"result", `func Welcome() *parleyv1.Welcome { return nil }`, []string{"Welcome: parleyv1.Welcome"}},
		{"parameter", `func Send(f *parleyv1.Frame) {}`, []string{"Send: parleyv1.Frame"}},
		{"method", `type C struct{}
func (*C) Raw() protoreflect.Message { return nil }`, []string{"C.Raw: protoreflect.Message"}},
		{"alias", `type FileInfo = parleyv1.FileInfo`, []string{"FileInfo: parleyv1.FileInfo"}},
		{"exported field", `type Error struct { Code parleyv1.ErrorCode; msg string }`, []string{"Error.Code: parleyv1.ErrorCode"}},
		{"embedded field", `type Info struct { *parleyv1.FileInfo }`, []string{"Info: parleyv1.FileInfo"}},
		{"interface method", `type Event interface { Frame() *parleyv1.Frame }`, []string{"Event.Frame: parleyv1.Frame"}},
		{"func type", `type Option func(*parleyv1.Hello)`, []string{"Option: parleyv1.Hello"}},
		{"exported field of an unexported type", `type view struct { W *parleyv1.Welcome }`, []string{"view.W: parleyv1.Welcome"}},
		{"variable", `var ErrX = sentinel(parleyv1.ErrorCode_ERROR_CODE_INTERNAL)`, []string{"ErrX: parleyv1.ErrorCode_ERROR_CODE_INTERNAL"}},
		{"constant", `const Max parleyv1.ErrorCode = 1`, []string{"Max: parleyv1.ErrorCode"}},
		{"runtime", `func Size(m proto.Message) int { return 0 }`, []string{"Size: proto.Message"}},
		{"renamed import", `func F() pb.Frame { return pb.Frame{} }`, []string{"F: pb.Frame"}},
		{"unexported field", `type Client struct { welcome *parleyv1.Welcome; held []*parleyv1.Frame }`, nil},
		{"unexported function", `func fromWire(w *parleyv1.Welcome) Welcome { return Welcome{} }`, nil},
		{"unexported method", `type C struct{}
func (c *C) do(f *parleyv1.Frame) {}`, nil},
		{"body", `func Version() uint32 { return uint32(parleyv1.ErrorCode_ERROR_CODE_INTERNAL) }`, nil},
		{"other packages", `func Now() time.Time { return time.Time{} }`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := `package parley
import (
	"time"
	"` + runtimePkg + `/proto"
	"` + runtimePkg + `/reflect/protoreflect"
	"` + schemaPkg + `"
	pb "` + schemaPkg + `"
)
` + tt.src
			f, err := parser.ParseFile(token.NewFileSet(), "x.go", src, parser.SkipObjectResolution)
			if err != nil {
				t.Fatal(err)
			}
			if got := apiLeaks([]*ast.File{f}); !slices.Equal(got, tt.want) {
				t.Errorf("leaks = %q, want %q", got, tt.want)
			}
		})
	}
}
