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
}
