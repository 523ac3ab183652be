using static TorchSharp.torch;

namespace LoraPS.Benchmarks.Harness;

/// <summary>The matmul throughput of a square n×n product, the reference for "fraction of peak".</summary>
/// <param name="Dtype">fp32 or bf16.</param>
/// <param name="Size">n.</param>
/// <param name="BestGflops">2n³ over the fastest iteration: the peak this machine reached in this run.</param>
/// <param name="MedianGflops">2n³ over the median iteration.</param>
/// <param name="BestCpuGflops">2n³ over the least CPU time of an iteration (all threads): the load-robust rate.</param>
public sealed record MatmulPeak(string Dtype, int Size, int Iterations, double BestGflops, double MedianGflops, double BestCpuGflops)
{
    /// <summary>Times <c>torch.mm</c> of two random n×n matrices with the current torch thread count.</summary>
    public static MatmulPeak Measure(ScalarType dtype, int size, int warmup, int iterations)
    {
        using var scope = NewDisposeScope();
        var generator = new Generator(42);
        var a = randn([size, size], generator: generator).to(dtype);
        var b = randn([size, size], generator: generator).to(dtype);
        var cpu = new List<double>();
        var timing = Timing.Measure(() =>
        {
            using var inner = NewDisposeScope();
            double start = ProcessorTime.Milliseconds();
            mm(a, b);
            cpu.Add(ProcessorTime.Milliseconds() - start);
        }, warmup, iterations);
        double flops = 2.0 * size * size * size;
        return new MatmulPeak(dtype == ScalarType.BFloat16 ? "bf16" : "fp32", size, iterations,
            flops / (timing.Min / 1000) / 1e9, flops / (timing.Median / 1000) / 1e9, flops / (cpu.Skip(warmup).Min() / 1000) / 1e9);
    }
}
