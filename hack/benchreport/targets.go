package main

// The benchmarks the targets read.
const (
	review   = "BenchmarkReviewClouddriver/"
	sidecars = "BenchmarkSidecarRegistries/1000-registries-10-accounts-3-regions"
	sidecar1 = "BenchmarkSidecarRegistries/1-registry"

	webhookHTTPS = "BenchmarkWebhookHTTPS"
)

// targets are the project's speed and memory goals (issue 6), on a
// two-core machine.
var targets = []target{
	{name: "admission handler, Clouddriver pod injected", figure: figure{bench: review + "inject", unit: "ns/op"},
		max: atMost(50_000), scale: 1000, unit: "µs"},
	{name: "  its allocations", figure: figure{bench: review + "inject", unit: "allocs/op"},
		max: atMost(200), unit: "allocs"},
	{name: "  an injected pod, per injection", figure: figure{bench: review + "injected", unit: "ns/op", per: review + "inject"},
		max: atMost(0.5), unit: "x"},
	{name: "  an unannotated pod, per injection", figure: figure{bench: review + "unannotated", unit: "ns/op", per: review + "inject"},
		max: atMost(0.5), unit: "x"},

	{name: "sidecar, 1000 registries, 10 accounts, 3 regions: calls", figure: figure{bench: sidecars, unit: "calls/refresh"},
		min: atLeast(3), max: atMost(3), unit: "calls"},
	{name: "  every file written, from process start", figure: figure{bench: sidecars, unit: "files-ms"},
		max: atMost(1000), unit: "ms"},
	{name: "  resident memory between refreshes", figure: figure{bench: sidecars, unit: "rss-KiB"},
		max: atMost(24 * 1024), scale: 1024, unit: "MiB"},
	{name: "  its peak", figure: figure{bench: sidecars, unit: "peak-rss-KiB"}, scale: 1024, unit: "MiB"},
	{name: "  per 1 registry's", figure: figure{bench: sidecars, unit: "rss-KiB", per: sidecar1}, unit: "x"},
	{name: "  CPU between refreshes (10 ms ticks in 2 s)", figure: figure{bench: sidecars, unit: "idle-cpu-ticks"},
		max: atMost(0), unit: "ticks"},
	{name: "binary size", figure: figure{bench: "BenchmarkBinarySize", unit: "MiB"}, unit: "MiB"},

	{name: "webhook over HTTPS, 32 connections, share of the ceiling", figure: figure{bench: webhookHTTPS, unit: "webhook-32-%ceiling"},
		min: atLeast(60), unit: "%"},
	{name: "  p99 at one connection, multiple of the ceiling's", figure: figure{bench: webhookHTTPS, unit: "webhook-1-p99-xceiling"},
		max: atMost(2), unit: "x"},
	{name: "  requests without a correct answer", figure: figure{bench: webhookHTTPS, unit: "wrong-answers"},
		max: atMost(0), unit: "requests"},
	{name: "  peak resident memory (VmHWM)", figure: figure{bench: webhookHTTPS, unit: "webhook-peak-MiB"},
		max: atMost(48), unit: "MiB"},
	{name: "  the ceiling, 32 connections", figure: figure{bench: webhookHTTPS, unit: "ceiling-32-rps"}, unit: "answers/s"},
	{name: "  CPU per answer", figure: figure{bench: webhookHTTPS, unit: "webhook-cpu-µs/answer"}, unit: "µs"},
	{name: "  the ceiling's CPU per answer", figure: figure{bench: webhookHTTPS, unit: "ceiling-cpu-µs/answer"}, unit: "µs"},
}
