// Package certs gives the webhook self-managed serving certificates.
//
// One replica, elected leader on a Lease, keeps a CA and a serving
// certificate for the webhook's Service in a Secret in its own namespace,
// writes the CA bundle into the caBundle of every webhook of its
// MutatingWebhookConfiguration and rotates both before they expire. Every
// replica watches the Secret and serves the certificate it holds, without
// restarting, and reports not ready until it has one.
//
// A CA rotation never fails an admission: the new CA first joins the
// bundle next to the old one, the serving certificate switches to the new
// CA only once the API server has had the bundle with both for a while
// ([Options.PropagationDelay]), and the old CA leaves the bundle only once
// every replica has had the new serving certificate as long. A serving
// certificate is always signed by the newest CA of the bundle, so renewing
// it under an unchanged CA needs no change to the bundle.
//
// The files follow one concern each: options.go holds the names and
// defaults, generate.go creates keys and certificates, bundle.go handles CA
// bundles and PEM, secret.go reads and writes the Secret's content,
// rotate.go decides what to change next, leader.go writes the Secret and
// the caBundle on the leader, election.go elects the leader on a Lease,
// serve.go watches and serves the certificate in every replica, kube.go
// talks to the API server (client-go's REST client and informers with a
// scheme of three API groups, not a clientset, to keep the binary lean),
// manager.go wires it all together, and files.go serves a certificate
// from files instead (--cert-dir).
//
// The Secret holds tls.crt and tls.key (the serving certificate and its
// key), ca.crt (the bundle, oldest CA first) and ca.key (the key of the
// newest CA), so that a new leader continues where the last one stopped.
package certs
