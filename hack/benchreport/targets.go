package main

// targets are the project's speed and memory goals (issue 6), on a
// two-core machine.
var targets = []target{
	{name: "admission handler, Clouddriver pod injected", figure: figure{bench: "BenchmarkReviewClouddriver/inject", unit: "ns/op"},
		max: atMost(50_000), scale: 1000, unit: "µs"},
	{name: "  its allocations", figure: figure{bench: "BenchmarkReviewClouddriver/inject", unit: "allocs/op"},
		max: atMost(200), unit: "allocs"},
	{name: "  an injected pod, per injection", figure: figure{bench: "BenchmarkReviewClouddriver/injected", unit: "ns/op", per: "BenchmarkReviewClouddriver/inject"},
		max: atMost(0.5), unit: "x"},
	{name: "  an unannotated pod, per injection", figure: figure{bench: "BenchmarkReviewClouddriver/unannotated", unit: "ns/op", per: "BenchmarkReviewClouddriver/inject"},
		max: atMost(0.5), unit: "x"},
	{name: "webhook over HTTPS, 32 connections, share of the ceiling", figure: figure{bench: "BenchmarkWebhookHTTPS", unit: "webhook-32-%ceiling"},
		min: atLeast(60), unit: "%"},
	{name: "  p99 at one connection, multiple of the ceiling's", figure: figure{bench: "BenchmarkWebhookHTTPS", unit: "webhook-1-p99-xceiling"},
		max: atMost(2), unit: "x"},
	{name: "  requests without a correct answer", figure: figure{bench: "BenchmarkWebhookHTTPS", unit: "wrong-answers"},
		max: atMost(0), unit: "requests"},
	{name: "  peak resident memory (VmHWM)", figure: figure{bench: "BenchmarkWebhookHTTPS", unit: "webhook-peak-MiB"},
		max: atMost(48), unit: "MiB"},
	{name: "  the ceiling, 32 connections", figure: figure{bench: "BenchmarkWebhookHTTPS", unit: "ceiling-32-rps"}, unit: "answers/s"},
	{name: "  CPU per answer", figure: figure{bench: "BenchmarkWebhookHTTPS", unit: "webhook-cpu-µs/answer"}, unit: "µs"},
	{name: "  the ceiling's CPU per answer", figure: figure{bench: "BenchmarkWebhookHTTPS", unit: "ceiling-cpu-µs/answer"}, unit: "µs"},
}
