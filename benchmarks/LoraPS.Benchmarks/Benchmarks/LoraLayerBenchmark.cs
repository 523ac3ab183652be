using LoraPS.Adapters;
using LoraPS.Benchmarks.Harness;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace LoraPS.Benchmarks.Benchmarks;

/// <summary>
/// What LoRA costs in one training step of one layer: forward + backward of
/// <list type="bullet">
/// <item><c>base</c>: the frozen Linear alone (the floor: y = x·Wᵀ and dL/dx);</item>
/// <item><c>lora</c>: <see cref="LoraLinear"/>, y = x·Wᵀ + s·(x·Aᵀ)·Bᵀ with gradients for A, B and x;</item>
/// <item><c>materialised</c>: the same update formed as a full matrix, y = x·(W + s·B·A)ᵀ, whose backward needs the
/// full (out, in) gradient dL/dW' = gᵀ·x before it reaches A and B.</item>
/// </list>
/// The input requires a gradient in all three, as every layer but the first does in a model. Hidden size 1024 (square
/// layer, no bias), a batch of 8×256 tokens, ranks 8/64/256, fp32 and bf16 base weights (adapters in fp32, as PEFT
/// keeps them).
/// </summary>
public sealed class LoraLayerBenchmark : IBenchmark
{
    const int Hidden = 1024;
    const int Batch = 8;
    const int Sequence = 256;

    public string Name => "lora-layer";

    public string Description => $"forward+backward of a {Hidden}x{Hidden} layer: frozen base vs LoRA vs materialised B·A, {Batch}x{Sequence} tokens";

    sealed record Row(string Dtype, int Rank, string Variant, double MedianMs, double MinMs, double MeanMs, double P90Ms, int Iterations,
        double VsBase, double VsLora, double TokensPerSecond, double? PeakRssMb);

    /// <summary>
    /// bf16 matmuls on a CPU without AVX512-BF16/AMX fall back to slow kernels (seconds per step at this size), so bf16
    /// runs at most this many timed iterations and no extra warm-up (the agreement check and the memory step already ran
    /// every variant); the JSON rows record the count used.
    /// </summary>
    const int Bf16MaxIterations = 3;

    public BenchmarkReport Run(BenchmarkOptions options, TextWriter output)
    {
        int[] ranks = options.Quick ? [8] : [8, 64, 256];
        ScalarType[] dtypes = [ScalarType.Float32, ScalarType.BFloat16];
        var rows = new List<Row>();
        var table = new ResultTable("dtype", "r", "variant", "median ms", "min ms", "x base", "x lora", "tokens/s", "peak RSS MB");
        foreach (var dtype in dtypes)
        {
            foreach (var rank in ranks)
            {
                if (!options.Includes($"{DtypeName(dtype)}/r{rank}")) continue;
                using var layer = new LayerUnderTest(dtype, rank);
                layer.CheckVariantsAgree();
                var variants = layer.Variants.ToList();
                // Peak RSS per variant from one untimed step each, the peak reset before it.
                var peaks = new Dictionary<string, double?>();
                foreach (var (variant, step) in variants)
                {
                    ProcessMemory.TryResetPeak();
                    step();
                    peaks[variant] = ProcessMemory.PeakRssBytes() / (1024.0 * 1024.0);
                }
                bool capped = dtype == ScalarType.BFloat16;
                int iterations = capped ? Math.Min(options.Iterations, Bf16MaxIterations) : options.Iterations;
                var times = Timing.MeasureInterleaved(variants, capped ? 0 : options.Warmup, iterations);
                foreach (var (variant, _) in variants)
                {
                    var t = times[variant];
                    var row = new Row(DtypeName(dtype), rank, variant, t.Median, t.Min, t.Mean, t.P90, iterations,
                        t.Median / times["base"].Median, t.Median / times["lora"].Median, Batch * Sequence / (t.Median / 1000), peaks[variant]);
                    rows.Add(row);
                    table.Add(row.Dtype, row.Rank, row.Variant, row.MedianMs, row.MinMs, row.VsBase, row.VsLora, Math.Round(row.TokensPerSecond), row.PeakRssMb ?? double.NaN);
                }
                output.Write('.');
            }
        }
        output.WriteLine();
        output.WriteLine(table);
        output.WriteLine("x base / x lora: median time relative to the frozen base layer / to the LoRA layer at the same dtype and rank.");
        var settings = new { hidden = Hidden, batch = Batch, sequence = Sequence, tokens = Batch * Sequence, ranks, dtypes = dtypes.Select(DtypeName).ToArray(),
            options.Warmup, options.Iterations, bf16_max_iterations = Bf16MaxIterations, timing = "median, variants interleaved round-robin",
            adapter_dtype = "float32", input_requires_grad = true, bias = false };
        return new BenchmarkReport(Name, settings, rows.Cast<object>().ToList());
    }

    static string DtypeName(ScalarType dtype) => dtype == ScalarType.BFloat16 ? "bf16" : "fp32";

    /// <summary>One base layer with a LoRA adapter, its input, an upstream gradient, and the three steps to time.</summary>
    sealed class LayerUnderTest : IDisposable
    {
        readonly LoraLinear _lora;
        readonly Linear _base;
        readonly Tensor _x, _upstream;
        readonly double _scaling;

        public LayerUnderTest(ScalarType dtype, int rank)
        {
            var generator = new Generator(1234);
            using var noGrad = no_grad();
            _base = nn.Linear(Hidden, Hidden, hasBias: false, dtype: dtype);
            _lora = new LoraLinear(_base);
            var options = new LoraLayerOptions { Rank = rank, Alpha = 2 * rank, Dropout = 0 };
            _lora.AddAdapter("default", options, generator);
            // B starts at zero; give it values so the update and its gradients are real numbers.
            _lora.LoraB("default").normal_(0, 0.02, generator);
            _lora.eval();
            _scaling = options.Scaling;
            _x = randn([Batch, Sequence, Hidden], dtype: dtype, generator: generator).requires_grad_(true);
            _upstream = randn([Batch, Sequence, Hidden], dtype: dtype, generator: generator);
        }

        public IEnumerable<(string Name, Action Step)> Variants =>
        [
            ("base", () => Step(() => _base.forward(_x))),
            ("lora", () => Step(() => _lora.forward(_x))),
            ("materialised", () => Step(Materialised)),
        ];

        /// <summary>y = x·(W + s·B·A)ᵀ with the delta formed in fp32 (as a merge does) and cast to W's dtype.</summary>
        Tensor Materialised()
        {
            var a = _lora.LoraA("default");
            var b = _lora.LoraB("default");
            var w = _base.weight!;
            var merged = (w.to(ScalarType.Float32) + b.matmul(a) * _scaling).to(w.dtype);
            return nn.functional.linear(_x, merged);
        }

        /// <summary>One forward + backward in its own dispose scope; gradients are cleared first, as a training loop does.</summary>
        void Step(Func<Tensor> forward)
        {
            using var scope = NewDisposeScope();
            _x.grad?.zero_();
            foreach (var p in _lora.parameters()) p.grad?.zero_();
            var y = forward();
            y.backward([_upstream]);
        }

        /// <summary>The LoRA layer and the materialised product compute the same output and the same dA, dB.</summary>
        public void CheckVariantsAgree()
        {
            using var scope = NewDisposeScope();
            var a = _lora.LoraA("default");
            var yLora = _lora.forward(_x);
            yLora.backward([_upstream]);
            var gradA = a.grad!.clone();
            a.grad!.zero_();
            _lora.LoraB("default").grad!.zero_();
            var yMat = Materialised();
            yMat.backward([_upstream]);
            double tolerance = _x.dtype == ScalarType.BFloat16 ? 5e-2 : 1e-3;
            double outDiff = (yLora.to(ScalarType.Float32) - yMat.to(ScalarType.Float32)).abs().max().item<float>();
            double gradDiff = ((gradA - a.grad!).abs().max() / gradA.abs().max()).item<float>();
            if (outDiff > tolerance || gradDiff > tolerance)
                throw new InvalidOperationException($"LoRA and materialised outputs disagree (|Δy| = {outDiff:G3}, relative |ΔdA| = {gradDiff:G3}); the benchmark would compare different computations.");
            _x.grad!.zero_();
        }

        public void Dispose()
        {
            _lora.Dispose();
            _x.Dispose();
            _upstream.Dispose();
        }
    }
}
