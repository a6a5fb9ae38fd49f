package main

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	cmv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	monv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
)

// workload is an object that runs pods: what selectors, Services and
// references are checked against.
type workload struct {
	obj      *object
	labels   map[string]string // the pod template's
	spec     *corev1.PodSpec
	claims   []string // StatefulSet volumeClaimTemplates names
	selector *metav1.LabelSelector
}

// bundle is one rendered deployment (one kustomize build or Helm render):
// references resolve within it.
type bundle struct {
	objs      []*object
	workloads []*workload
	byKey     map[string]*object // kind/namespace/name
	external  map[string][]string
	problems  []string
}

// check runs the semantic checks over one render's decoded objects.
// external are the Secrets the operator creates by hand (deploy/README.md's
// table): name -> keys (none listed: any key).
func check(objs []*object, external map[string][]string) []string {
	b := &bundle{objs: objs, byKey: map[string]*object{}, external: external}
	for _, o := range objs {
		if o.meta.Name == "" {
			b.problem(o, "metadata.name is empty")
			continue
		}
		if !namespaced(o) {
			o.meta.Namespace = "" // kustomize's namespace: may land on a cluster-scoped CRD kind
		} else if o.meta.Namespace == "" {
			o.meta.Namespace = "default"
		}
		k := key(o.gvk.Kind, o.meta.Namespace, o.meta.Name)
		if prev, dup := b.byKey[k]; dup {
			b.problem(o, "defined twice (also document %d of %s)", prev.index, prev.file)
		}
		b.byKey[k] = o
		b.names(o)
		if w := asWorkload(o); w != nil {
			b.workloads = append(b.workloads, w)
		}
	}
	for _, w := range b.workloads {
		b.checkWorkload(w)
	}
	for _, o := range objs {
		switch t := o.typed.(type) {
		case *corev1.Service:
			b.checkService(o, t)
		case *policyv1.PodDisruptionBudget:
			b.checkSelects(o, "spec.selector", t.Spec.Selector, false)
		case *autoscalingv2.HorizontalPodAutoscaler:
			b.checkHPA(o, t)
		case *networkingv1.NetworkPolicy:
			b.checkNetworkPolicy(o, t)
		case *networkingv1.Ingress:
			b.checkIngress(o, t)
		case *monv1.ServiceMonitor:
			b.checkServiceMonitor(o, t)
		case *cmv1.Certificate:
			b.checkCertificate(o, t)
		}
	}
	sort.Strings(b.problems)
	return slices.Compact(b.problems)
}

func key(kind, ns, name string) string { return kind + "/" + ns + "/" + name }

func namespaced(o *object) bool {
	switch o.gvk.Kind {
	case "Namespace", "ClusterRole", "ClusterRoleBinding", "ClusterIssuer", "PersistentVolume",
		"StorageClass", "CustomResourceDefinition", "IngressClass", "PriorityClass", "GatewayClass":
		return false
	}
	return true
}

func (b *bundle) problem(o *object, format string, args ...any) {
	b.problems = append(b.problems, fmt.Sprintf("%s: %s: %s", o.file, o.ref(), fmt.Sprintf(format, args...)))
}

// names: the object's name and labels are ones the API server accepts.
func (b *bundle) names(o *object) {
	var errs []string
	switch o.gvk.Kind {
	case "Service", "Namespace":
		errs = validation.IsDNS1123Label(o.meta.Name) // a DNS label: it becomes a host name
	default:
		errs = validation.IsDNS1123Subdomain(o.meta.Name)
	}
	for _, e := range errs {
		b.problem(o, "metadata.name %q: %s", o.meta.Name, e)
	}
	b.checkLabels(o, "metadata.labels", o.meta.Labels)
}

func (b *bundle) checkLabels(o *object, path string, l map[string]string) {
	for k, v := range l {
		for _, e := range validation.IsQualifiedName(k) {
			b.problem(o, "%s key %q: %s", path, k, e)
		}
		for _, e := range validation.IsValidLabelValue(v) {
			b.problem(o, "%s[%s] = %q: %s", path, k, v, e)
		}
	}
}

func asWorkload(o *object) *workload {
	switch t := o.typed.(type) {
	case *appsv1.Deployment:
		return &workload{obj: o, labels: t.Spec.Template.Labels, spec: &t.Spec.Template.Spec, selector: t.Spec.Selector}
	case *appsv1.StatefulSet:
		w := &workload{obj: o, labels: t.Spec.Template.Labels, spec: &t.Spec.Template.Spec, selector: t.Spec.Selector}
		for _, c := range t.Spec.VolumeClaimTemplates {
			w.claims = append(w.claims, c.Name)
		}
		return w
	case *appsv1.DaemonSet:
		return &workload{obj: o, labels: t.Spec.Template.Labels, spec: &t.Spec.Template.Spec, selector: t.Spec.Selector}
	case *appsv1.ReplicaSet:
		return &workload{obj: o, labels: t.Spec.Template.Labels, spec: &t.Spec.Template.Spec, selector: t.Spec.Selector}
	case *batchv1.Job:
		return &workload{obj: o, labels: t.Spec.Template.Labels, spec: &t.Spec.Template.Spec}
	case *batchv1.CronJob:
		return &workload{obj: o, labels: t.Spec.JobTemplate.Spec.Template.Labels, spec: &t.Spec.JobTemplate.Spec.Template.Spec}
	case *corev1.Pod:
		return &workload{obj: o, labels: t.Labels, spec: &t.Spec}
	}
	return nil
}

// selected returns the workloads of namespace ns whose pods sel selects.
func (b *bundle) selected(ns string, sel labels.Selector) []*workload {
	var out []*workload
	for _, w := range b.workloads {
		if w.obj.meta.Namespace == ns && sel.Matches(labels.Set(w.labels)) {
			out = append(out, w)
		}
	}
	return out
}

// checkSelects: a label selector must parse and select some pods. An
// empty selector selects every pod, which is allowed only where allowEmpty.
func (b *bundle) checkSelects(o *object, path string, ls *metav1.LabelSelector, allowEmpty bool) []*workload {
	if ls == nil || (len(ls.MatchLabels) == 0 && len(ls.MatchExpressions) == 0) {
		if !allowEmpty {
			b.problem(o, "%s is empty: it would select every pod of the namespace", path)
		}
		return b.selected(o.meta.Namespace, labels.Everything())
	}
	sel, err := metav1.LabelSelectorAsSelector(ls)
	if err != nil {
		b.problem(o, "%s: %v", path, err)
		return nil
	}
	ws := b.selected(o.meta.Namespace, sel)
	if len(ws) == 0 {
		b.problem(o, "%s %s matches no pod template in namespace %s", path, sel, o.meta.Namespace)
	}
	return ws
}

func (b *bundle) checkWorkload(w *workload) {
	o := w.obj
	b.checkLabels(o, "pod template labels", w.labels)
	if w.selector != nil {
		sel, err := metav1.LabelSelectorAsSelector(w.selector)
		if err != nil {
			b.problem(o, "spec.selector: %v", err)
		} else if !sel.Matches(labels.Set(w.labels)) {
			b.problem(o, "spec.selector %s does not match its own pod template's labels %v", sel, labels.Set(w.labels))
		}
	}
	spec := w.spec
	volumes := map[string]bool{}
	for _, c := range w.claims {
		volumes[c] = true
	}
	for i, v := range spec.Volumes {
		volumes[v.Name] = true
		path := fmt.Sprintf("volumes[%d] %s", i, v.Name)
		switch {
		case v.Secret != nil:
			b.needSecret(o, path, v.Secret.SecretName, v.Secret.Items)
		case v.ConfigMap != nil:
			b.needConfigMap(o, path, v.ConfigMap.Name, "", v.ConfigMap.Items)
		case v.PersistentVolumeClaim != nil:
			if b.byKey[key("PersistentVolumeClaim", o.meta.Namespace, v.PersistentVolumeClaim.ClaimName)] == nil {
				b.problem(o, "%s: PersistentVolumeClaim %q is not in the render", path, v.PersistentVolumeClaim.ClaimName)
			}
		case v.Projected != nil:
			for _, s := range v.Projected.Sources {
				if s.Secret != nil {
					b.needSecret(o, path, s.Secret.Name, s.Secret.Items)
				}
				if s.ConfigMap != nil {
					b.needConfigMap(o, path, s.ConfigMap.Name, "", s.ConfigMap.Items)
				}
			}
		}
	}
	if sa := spec.ServiceAccountName; sa != "" && sa != "default" && b.byKey[key("ServiceAccount", o.meta.Namespace, sa)] == nil {
		b.problem(o, "serviceAccountName %q: no such ServiceAccount in the render", sa)
	}
	for _, s := range spec.ImagePullSecrets {
		b.needSecret(o, "imagePullSecrets", s.Name, nil)
	}
	containers := map[string][]corev1.Container{"initContainers": spec.InitContainers, "containers": spec.Containers}
	for _, kind := range []string{"initContainers", "containers"} {
		for _, c := range containers[kind] {
			path := fmt.Sprintf("%s %s", kind, c.Name)
			ports := map[string]bool{}
			for _, p := range c.Ports {
				if p.Name != "" {
					if ports[p.Name] {
						b.problem(o, "%s: port name %q used twice", path, p.Name)
					}
					ports[p.Name] = true
				}
			}
			for probe, p := range map[string]*corev1.Probe{"livenessProbe": c.LivenessProbe, "readinessProbe": c.ReadinessProbe, "startupProbe": c.StartupProbe} {
				if p == nil {
					continue
				}
				var port *intstr.IntOrString
				switch {
				case p.HTTPGet != nil:
					port = &p.HTTPGet.Port
				case p.TCPSocket != nil:
					port = &p.TCPSocket.Port
				}
				if port != nil && port.Type == intstr.String && !ports[port.StrVal] {
					b.problem(o, "%s: %s port %q is not a port name of the container (has %s)", path, probe, port.StrVal, setString(ports))
				}
			}
			for _, m := range c.VolumeMounts {
				if !volumes[m.Name] {
					b.problem(o, "%s: volumeMount %q names no volume of the pod", path, m.Name)
				}
			}
			for _, e := range c.Env {
				if e.ValueFrom == nil {
					continue
				}
				// optional: true lets the key be missing, not the object: a
				// misspelt name is still caught.
				if r := e.ValueFrom.SecretKeyRef; r != nil {
					k := r.Key
					if r.Optional != nil && *r.Optional {
						k = ""
					}
					b.needSecretKey(o, path+" env "+e.Name, r.Name, k)
				}
				if r := e.ValueFrom.ConfigMapKeyRef; r != nil {
					k := r.Key
					if r.Optional != nil && *r.Optional {
						k = ""
					}
					b.needConfigMap(o, path+" env "+e.Name, r.Name, k, nil)
				}
			}
			for _, e := range c.EnvFrom {
				if e.SecretRef != nil {
					b.needSecret(o, path+" envFrom", e.SecretRef.Name, nil)
				}
				if e.ConfigMapRef != nil {
					b.needConfigMap(o, path+" envFrom", e.ConfigMapRef.Name, "", nil)
				}
			}
		}
	}
}

// Secrets come from the render, from cert-manager (a Certificate's
// spec.secretName) or from the operator (deploy/README.md's table).
func (b *bundle) secretKeys(ns, name string) (keys []string, known, anyKey bool) {
	if o := b.byKey[key("Secret", ns, name)]; o != nil {
		s := o.typed.(*corev1.Secret)
		for k := range s.Data {
			keys = append(keys, k)
		}
		for k := range s.StringData {
			keys = append(keys, k)
		}
		return keys, true, false
	}
	for _, o := range b.objs {
		if c, ok := o.typed.(*cmv1.Certificate); ok && o.meta.Namespace == ns && c.Spec.SecretName == name {
			return []string{"tls.crt", "tls.key", "ca.crt"}, true, false
		}
	}
	if keys, ok := b.external[name]; ok {
		return keys, true, len(keys) == 0
	}
	return nil, false, false
}

func (b *bundle) needSecret(o *object, path, name string, items []corev1.KeyToPath) {
	if name == "" {
		b.problem(o, "%s: no Secret name", path)
		return
	}
	keys, known, anyKey := b.secretKeys(o.meta.Namespace, name)
	if !known {
		b.problem(o, "%s: Secret %q is neither in the render nor in deploy/README.md's Secrets table", path, name)
		return
	}
	for _, it := range items {
		if !anyKey && !slices.Contains(keys, it.Key) {
			b.problem(o, "%s: Secret %q has no key %q (has %s)", path, name, it.Key, strings.Join(keys, ", "))
		}
	}
}

func (b *bundle) needSecretKey(o *object, path, name, k string) {
	var items []corev1.KeyToPath
	if k != "" {
		items = append(items, corev1.KeyToPath{Key: k})
	}
	b.needSecret(o, path, name, items)
}

func (b *bundle) needConfigMap(o *object, path, name, k string, items []corev1.KeyToPath) {
	cm, ok := b.byKey[key("ConfigMap", o.meta.Namespace, name)]
	if !ok {
		b.problem(o, "%s: ConfigMap %q is not in the render", path, name)
		return
	}
	c := cm.typed.(*corev1.ConfigMap)
	want := []string{}
	if k != "" {
		want = append(want, k)
	}
	for _, it := range items {
		want = append(want, it.Key)
	}
	for _, w := range want {
		_, inData := c.Data[w]
		_, inBinary := c.BinaryData[w]
		if !inData && !inBinary {
			b.problem(o, "%s: ConfigMap %q has no key %q", path, name, w)
		}
	}
}

// podPorts: the container ports of a pod spec, by name and by number.
func podPorts(spec *corev1.PodSpec) (byName map[string]bool, byNumber map[int32]bool) {
	byName, byNumber = map[string]bool{}, map[int32]bool{}
	for _, c := range spec.Containers {
		for _, p := range c.Ports {
			if p.Name != "" {
				byName[p.Name] = true
			}
			byNumber[p.ContainerPort] = true
		}
	}
	return byName, byNumber
}

func (b *bundle) checkService(o *object, s *corev1.Service) {
	if len(s.Spec.Selector) == 0 {
		return // endpoints managed elsewhere (ExternalName, manual Endpoints)
	}
	ws := b.checkSelects(o, "spec.selector", &metav1.LabelSelector{MatchLabels: s.Spec.Selector}, false)
	for _, p := range s.Spec.Ports {
		target := p.TargetPort
		if target.Type == intstr.Int && target.IntVal == 0 {
			target = intstr.FromInt32(p.Port)
		}
		for _, w := range ws {
			byName, byNumber := podPorts(w.spec)
			if target.Type == intstr.String && !byName[target.StrVal] {
				b.problem(o, "port %s: targetPort %q is not a container port name of %s (has %s)", portName(p), target.StrVal, w.obj.ref(), setString(byName))
			}
			if target.Type == intstr.Int && !byNumber[target.IntVal] {
				b.problem(o, "port %s: targetPort %d is not a container port of %s", portName(p), target.IntVal, w.obj.ref())
			}
		}
	}
}

func portName(p corev1.ServicePort) string {
	if p.Name != "" {
		return p.Name
	}
	return strconv.Itoa(int(p.Port))
}

func (b *bundle) checkHPA(o *object, h *autoscalingv2.HorizontalPodAutoscaler) {
	r := h.Spec.ScaleTargetRef
	switch r.Kind {
	case "Deployment", "StatefulSet", "ReplicaSet":
	default:
		b.problem(o, "spec.scaleTargetRef: kind %q cannot be scaled (want Deployment, StatefulSet or ReplicaSet)", r.Kind)
		return
	}
	t := b.byKey[key(r.Kind, o.meta.Namespace, r.Name)]
	if t == nil {
		b.problem(o, "spec.scaleTargetRef: %s %q is not in the render (namespace %s)", r.Kind, r.Name, o.meta.Namespace)
		return
	}
	if r.APIVersion != "" && r.APIVersion != t.gvk.GroupVersion().String() {
		b.problem(o, "spec.scaleTargetRef: apiVersion %q, but %s is %s", r.APIVersion, t.ref(), t.gvk.GroupVersion())
	}
}

func (b *bundle) checkNetworkPolicy(o *object, np *networkingv1.NetworkPolicy) {
	ws := b.checkSelects(o, "spec.podSelector", &np.Spec.PodSelector, true)
	peers := func(path string, ps []networkingv1.NetworkPolicyPeer) [][]*workload {
		var out [][]*workload
		for i, p := range ps {
			if p.PodSelector != nil && p.NamespaceSelector == nil {
				out = append(out, b.checkSelects(o, fmt.Sprintf("%s[%d].podSelector", path, i), p.PodSelector, true))
			}
		}
		return out
	}
	namedPorts := func(path string, ports []networkingv1.NetworkPolicyPort, ws []*workload) {
		for _, p := range ports {
			if p.Port == nil || p.Port.Type != intstr.String {
				continue
			}
			found := false
			for _, w := range ws {
				if byName, _ := podPorts(w.spec); byName[p.Port.StrVal] {
					found = true
				}
			}
			if !found && len(ws) > 0 {
				b.problem(o, "%s: named port %q is not a container port of any pod it applies to", path, p.Port.StrVal)
			}
		}
	}
	for i, r := range np.Spec.Ingress {
		peers(fmt.Sprintf("spec.ingress[%d].from", i), r.From)
		namedPorts(fmt.Sprintf("spec.ingress[%d].ports", i), r.Ports, ws)
	}
	for i, r := range np.Spec.Egress {
		to := peers(fmt.Sprintf("spec.egress[%d].to", i), r.To)
		if len(to) > 0 && len(to) == len(r.To) {
			namedPorts(fmt.Sprintf("spec.egress[%d].ports", i), r.Ports, slices.Concat(to...))
		}
	}
}

func (b *bundle) checkIngress(o *object, ing *networkingv1.Ingress) {
	backend := func(path string, be *networkingv1.IngressBackend) {
		if be == nil || be.Service == nil {
			return
		}
		so := b.byKey[key("Service", o.meta.Namespace, be.Service.Name)]
		if so == nil {
			b.problem(o, "%s: Service %q is not in the render", path, be.Service.Name)
			return
		}
		svc := so.typed.(*corev1.Service)
		for _, p := range svc.Spec.Ports {
			if (be.Service.Port.Name != "" && p.Name == be.Service.Port.Name) || (be.Service.Port.Number != 0 && p.Port == be.Service.Port.Number) {
				return
			}
		}
		b.problem(o, "%s: Service %q has no port %s", path, be.Service.Name, ingressPort(be.Service.Port))
	}
	backend("spec.defaultBackend", ing.Spec.DefaultBackend)
	for i, r := range ing.Spec.Rules {
		if r.HTTP == nil {
			continue
		}
		for j, p := range r.HTTP.Paths {
			backend(fmt.Sprintf("spec.rules[%d].http.paths[%d].backend", i, j), &p.Backend)
		}
	}
	for i, t := range ing.Spec.TLS {
		if t.SecretName != "" {
			b.needSecret(o, fmt.Sprintf("spec.tls[%d]", i), t.SecretName, nil)
		}
	}
}

func ingressPort(p networkingv1.ServiceBackendPort) string {
	if p.Name != "" {
		return strconv.Quote(p.Name)
	}
	return strconv.Itoa(int(p.Number))
}

// checkServiceMonitor: its selector picks Services (of its own namespace
// unless namespaceSelector says otherwise) and each endpoint's port names
// a port of them.
func (b *bundle) checkServiceMonitor(o *object, sm *monv1.ServiceMonitor) {
	ns := []string{o.meta.Namespace}
	if sm.Spec.NamespaceSelector.Any {
		ns = nil
	} else if len(sm.Spec.NamespaceSelector.MatchNames) > 0 {
		ns = sm.Spec.NamespaceSelector.MatchNames
	}
	sel, err := metav1.LabelSelectorAsSelector(&sm.Spec.Selector)
	if err != nil {
		b.problem(o, "spec.selector: %v", err)
		return
	}
	var svcs []*corev1.Service
	for _, x := range b.objs {
		s, ok := x.typed.(*corev1.Service)
		if ok && (ns == nil || slices.Contains(ns, x.meta.Namespace)) && sel.Matches(labels.Set(x.meta.Labels)) {
			svcs = append(svcs, s)
		}
	}
	if len(svcs) == 0 {
		b.problem(o, "spec.selector %s matches no Service", sel)
		return
	}
	for i, ep := range sm.Spec.Endpoints {
		if ep.Port == "" {
			continue
		}
		for _, s := range svcs {
			if !slices.ContainsFunc(s.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == ep.Port }) {
				b.problem(o, "spec.endpoints[%d].port %q is not a port name of Service %s", i, ep.Port, s.Name)
			}
		}
	}
}

func (b *bundle) checkCertificate(o *object, c *cmv1.Certificate) {
	r := c.Spec.IssuerRef
	if r.Group != "" && r.Group != "cert-manager.io" {
		return // an external issuer: not ours to know
	}
	kind := r.Kind
	if kind == "" {
		kind = "Issuer"
	}
	if kind == "ClusterIssuer" {
		return // cluster-wide, usually the cluster operator's (letsencrypt-prod): not ours to ship
	}
	if b.byKey[key(kind, o.meta.Namespace, r.Name)] == nil {
		b.problem(o, "spec.issuerRef: %s %q is not in the render (namespace %s)", kind, r.Name, o.meta.Namespace)
	}
}

func setString(m map[string]bool) string {
	if len(m) == 0 {
		return "none"
	}
	var s []string
	for k := range m {
		s = append(s, k)
	}
	sort.Strings(s)
	return strings.Join(s, ", ")
}

func sortStrings(s []string) { sort.Strings(s) }
