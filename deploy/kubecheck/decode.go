package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	cmv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	monv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// scheme knows every API group and version a Parley manifest may use: the
// Kubernetes built-ins and the CRDs we ship objects of (Prometheus
// Operator's monitoring.coreos.com/v1, cert-manager.io/v1, Gateway API).
// A kind outside it is an error: the cluster would refuse it, or it is a
// typo of a kind.
var scheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		corev1.AddToScheme, appsv1.AddToScheme, batchv1.AddToScheme,
		policyv1.AddToScheme, autoscalingv2.AddToScheme, networkingv1.AddToScheme,
		rbacv1.AddToScheme, schedulingv1.AddToScheme, storagev1.AddToScheme, monv1.AddToScheme, cmv1.AddToScheme, gatewayv1.Install,
	} {
		if err := add(s); err != nil {
			panic(err)
		}
	}
	return s
}()

// object is one decoded document of a rendered bundle.
type object struct {
	file  string // where it came from
	index int    // its position among the file's documents, from 1
	gvk   schema.GroupVersionKind
	meta  metav1.ObjectMeta
	typed runtime.Object
}

// ref names the object in messages: "Deployment parley/gateway".
func (o *object) ref() string {
	if o.meta.Namespace != "" {
		return fmt.Sprintf("%s %s/%s", o.gvk.Kind, o.meta.Namespace, o.meta.Name)
	}
	return fmt.Sprintf("%s %s", o.gvk.Kind, o.meta.Name)
}

// decodeAll splits a multi-document YAML stream and decodes every document
// into its Go type, rejecting unknown fields (exact, case-sensitive names,
// as the API server's strict field validation does), duplicate fields and
// unknown kinds. It returns the objects it could decode and a problem for
// each document it could not.
func decodeAll(file string, r io.Reader) ([]*object, []string) {
	var (
		objs     []*object
		problems []string
	)
	rd := utilyaml.NewYAMLReader(bufio.NewReader(r))
	for i := 1; ; i++ {
		doc, err := rd.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: document %d: %v", file, i, err))
			break
		}
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			i--
			continue
		}
		o, errs := decodeOne(doc)
		where := fmt.Sprintf("%s: document %d", file, i)
		if o != nil {
			o.file, o.index = file, i
			where = fmt.Sprintf("%s: %s", file, o.ref())
			objs = append(objs, o)
		}
		for _, e := range errs {
			problems = append(problems, where+": "+e)
		}
	}
	return objs, problems
}

func stripComments(doc []byte) []byte {
	var out [][]byte
	for l := range bytes.SplitSeq(doc, []byte("\n")) {
		if !bytes.HasPrefix(bytes.TrimSpace(l), []byte("#")) {
			out = append(out, l)
		}
	}
	return bytes.Join(out, []byte("\n"))
}

// decodeOne decodes one document; the object is nil when not even its
// kind could be read.
func decodeOne(doc []byte) (*object, []string) {
	js, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return nil, []string{"not valid YAML: " + err.Error()}
	}
	var tm metav1.TypeMeta
	if err := kjson.UnmarshalCaseSensitivePreserveInts(js, &tm); err != nil {
		return nil, []string{"not a Kubernetes object: " + err.Error()}
	}
	if tm.APIVersion == "" || tm.Kind == "" {
		return nil, []string{"no apiVersion or kind"}
	}
	gv, err := schema.ParseGroupVersion(tm.APIVersion)
	if err != nil {
		return nil, []string{fmt.Sprintf("apiVersion %q: %v", tm.APIVersion, err)}
	}
	gvk := gv.WithKind(tm.Kind)
	var partial struct {
		Metadata metav1.ObjectMeta `json:"metadata"`
	}
	_ = kjson.UnmarshalCaseSensitivePreserveInts(js, &partial) // the typed decode reports what is wrong
	o := &object{gvk: gvk, meta: partial.Metadata}
	typed, err := scheme.New(gvk)
	if err != nil {
		return o, []string{fmt.Sprintf("unknown kind %s %s: not a Kubernetes API type nor a CRD this check knows (%s)", tm.APIVersion, tm.Kind, knownGroups())}
	}
	strict, err := kjson.UnmarshalStrict(js, typed, kjson.DisallowDuplicateFields, kjson.DisallowUnknownFields)
	if err != nil {
		return o, []string{"does not decode as " + gvk.String() + ": " + err.Error()}
	}
	o.typed = typed
	var problems []string
	for _, e := range strict {
		problems = append(problems, e.Error())
	}
	return o, problems
}

func knownGroups() string {
	seen := map[string]bool{}
	var gvs []string
	for gvk := range scheme.AllKnownTypes() {
		gv := gvk.GroupVersion().String()
		if !seen[gv] && gvk.Version != runtime.APIVersionInternal {
			seen[gv] = true
			gvs = append(gvs, gv)
		}
	}
	sortStrings(gvs)
	return "known: " + strings.Join(gvs, ", ")
}
