using System.Diagnostics;
using System.Text.Json;
using LoraPS.Adapters;
using LoraPS.Benchmarks.Harness;
using LoraPS.Checkpoints;
using LoraPS.Models;
using LoraPS.Quantization;
using LoraPS.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace LoraPS.Benchmarks.Benchmarks;

/// <summary>
/// QLoRA's trade-off on two random Llamas with the same blocks (hidden 1024, 12 layers, MLP 2816, untied head) and
/// vocabularies of 32000 (220M parameters) and 8000 (171M, where the quantizable linear weights dominate as in 7B
/// models): peak process memory and time per LoRA training step for an fp32, a bf16 and an nf4-dq base (the last with
/// bf16 and with fp32 compute). Each configuration runs in a fresh child process, so one case's peak cannot hide in
/// another's: the child loads the checkpoint (written once, bf16, to a temp folder), resets the peak RSS, then trains,
/// recording RSS after each phase of the first step. <c>LORAPS_QLORA_SMAPS=/path/prefix</c> also copies
/// <c>/proc/self/smaps</c> at each phase, to see which mappings (glibc heap, mmapped tensors, files) grew.
/// </summary>
/// <remarks>
/// A step is forward + backward + AdamW on a rank-16 adapter over every linear layer but the head, for one sequence of
/// <see cref="SequenceLength"/> random tokens. The child is this program again, told which case to run by
/// <see cref="ChildVariable"/>; it writes its row as JSON to the --out file the parent gives it.
/// </remarks>
public sealed class QloraBenchmark : IBenchmark
{
    const int SequenceLength = 64;
    const int Rank = 16;
    const string ChildVariable = "LORAPS_QLORA_CHILD_CASE";

    public string Name => "qlora";

    public string Description => "QLoRA: peak RSS and LoRA step time for fp32, bf16 and nf4-dq bases of two random Llamas (vocab 32000 and 8000; fresh process per case)";

    /// <summary>One random Llama: its label, config.json, and the folder it is written to once.</summary>
    sealed record ModelSpec(string Label, string Config)
    {
        public string Folder => Path.Combine(Path.GetTempPath(), $"loraps-qlora-bench-llama-{Label}");
        public int VocabSize => JsonDocument.Parse(Config).RootElement.GetProperty("vocab_size").GetInt32();
    }

    /// <summary>One configuration: the model, the compute dtype and the base-weight quantization.</summary>
    sealed record Case(ModelSpec Model, string Name, ScalarType DType, string? Quantize)
    {
        public string Label => $"{Model.Label}/{Name}";
    }

    /// <summary>What a child measures.</summary>
    public sealed record Row(string Case, long Parameters, long QuantizedParameters, double? BaseBitsPerParameter, long WeightBytes,
        long OptimizerStateBytes, double LoadSeconds, double BaselineRssMb, double LoadPeakRssMb, double AfterLoadRssMb, double TrainPeakRssMb,
        double StepMedianMs, double StepMinMs, int Steps, double FirstLoss, double LastLoss, double? LoadAverage, List<Phase> Phases);

    /// <summary>RSS after a phase of the first training step, and the peak within it (the peak is reset before each phase).</summary>
    public sealed record Phase(string Name, double RssMb, double PeakMb, double AnonMb, double FileMb);

    // Same blocks in both: 12 layers of hidden 1024, MLP 2816 (154.1M linear weights). With vocab 32000 and an untied
    // head, embedding + head are 30% of the parameters and stay unquantized; with vocab 8000 they are 9.6%, closer to a
    // 7B Llama's 3% (2 × 32000 × 4096 of 6.7B), where QLoRA's memory saving is meant to be judged.
    static string LlamaConfig(int vocab) => $$"""
        {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": {{vocab}}, "hidden_size": 1024,
         "intermediate_size": 2816, "num_hidden_layers": 12, "num_attention_heads": 16, "num_key_value_heads": 16,
         "max_position_embeddings": 2048, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "hidden_act": "silu",
         "tie_word_embeddings": false, "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "bfloat16"}
        """;

    static readonly ModelSpec[] Models = [new("220m-v32k", LlamaConfig(32000)), new("171m-v8k", LlamaConfig(8000))];

    static readonly Case[] Cases = Models.SelectMany(m => new Case[]
    {
        new(m, "fp32", ScalarType.Float32, null),
        new(m, "bf16", ScalarType.BFloat16, null),
        new(m, "nf4-dq/bf16-compute", ScalarType.BFloat16, "nf4-dq"),
        new(m, "nf4-dq/fp32-compute", ScalarType.Float32, "nf4-dq"),
    }).ToArray();

    public BenchmarkReport Run(BenchmarkOptions options, TextWriter output)
    {
        int warmup = Math.Min(options.Warmup, 1), steps = options.Quick ? 1 : Math.Min(options.Iterations, 3);
        if (Environment.GetEnvironmentVariable(ChildVariable) is { } child)
        {
            var c = Cases.Single(c => c.Label == child);
            // Every case gets the same warm-up and steps (an earlier version ran bf16 once: its GEMMs were 50-100× slower
            // under heavy load, but at load ≈ 2 a bf16 step costs about what an fp32 one does on this CPU).
            var row = Measure(c, warmup, steps);
            return new BenchmarkReport(Name, new { Child = child }, [row]);
        }

        var rows = new List<Row>();
        var table = new ResultTable("case", "params", "bits/param", "weights MB", "baseline MB", "load peak MB", "after load MB", "train peak MB", "step ms", "loss");
        foreach (var c in Cases)
        {
            if (!options.Includes(c.Label)) continue;
            if (!File.Exists(Path.Combine(c.Model.Folder, "model.safetensors"))) WriteRandomModel(c.Model, output);
            output.WriteLine($"running {c.Label} in a child process…");
            var row = RunChild(c, options);
            rows.Add(row);
            table.Add(c.Label, row.Parameters, row.BaseBitsPerParameter ?? 16.0 * (c.DType == ScalarType.Float32 ? 2 : 1), row.WeightBytes / 1048576.0,
                row.BaselineRssMb, row.LoadPeakRssMb, row.AfterLoadRssMb, row.TrainPeakRssMb, row.StepMedianMs, $"{row.FirstLoss:F3}→{row.LastLoss:F3}");
        }
        output.Write(table);
        var layers = LayerTimes(options, output);
        var dequantize = DequantizeTimes(options, output);
        var quantize = QuantizeTimes(options, output);
        var ratios = Ratios(rows);
        foreach (var (name, value) in ratios) output.WriteLine($"{name}: {value:F3}");
        return new BenchmarkReport(Name, new { SequenceLength, Batch = 1, Rank, Alpha = 2 * Rank, Targets = "all-linear", Warmup = warmup, Steps = steps, ModelConfigs = Models.ToDictionary(m => m.Label, m => JsonDocument.Parse(m.Config).RootElement) },
            [.. rows, .. layers, .. dequantize, .. quantize, ratios]);
    }

    /// <summary>Quantizing one weight (what loading with -Quantize does per layer): milliseconds and weights per second.</summary>
    public sealed record QuantizeRow(string Case, long Elements, double Ms, double MillionWeightsPerSecond);

    /// <summary>nf4 and nf4-dq quantization of a 2816×1024 float32 and bf16 weight, as the loader does it.</summary>
    static List<QuantizeRow> QuantizeTimes(BenchmarkOptions options, TextWriter output)
    {
        var rows = new List<QuantizeRow>();
        var table = new ResultTable("quantize 2816×1024", "ms", "M weights/s");
        using var scope = NewDisposeScope();
        var weight = randn(2816, 1024) * 0.02;
        foreach (var (label, w, dq) in new[] { ("quantize/fp32/nf4", weight, false), ("quantize/fp32/nf4-dq", weight, true), ("quantize/bf16/nf4-dq", weight.to(ScalarType.BFloat16), true) })
        {
            if (!options.Includes(label)) continue;
            var time = Timing.Measure(() => QuantizedTensor.Quantize(w, QuantType.NF4, doubleQuant: dq).Dispose(), 1, options.Quick ? 3 : 10);
            var row = new QuantizeRow(label, w.numel(), time.Median, w.numel() / time.Median / 1000.0);
            rows.Add(row);
            table.Add(label, row.Ms, row.MillionWeightsPerSecond);
        }
        if (rows.Count > 0) output.Write(table);
        return rows;
    }

    /// <summary>One 1024→2816 projection (an MLP up_proj), forward + input gradient, plain Linear vs nf4-dq, in one compute dtype.</summary>
    public sealed record LayerRow(string Case, string Compute, int Tokens, double LinearMs, double QuantizedMs, double DequantizeMs, double Ratio);

    /// <summary>
    /// Where dequantization stops mattering: it costs the same whatever the batch, the matmul grows with the tokens.
    /// Interleaved timing of a plain frozen Linear and a <see cref="QuantizedLinear"/> (and of dequantization alone),
    /// with bf16 and with fp32 compute.
    /// </summary>
    List<LayerRow> LayerTimes(BenchmarkOptions options, TextWriter output)
    {
        var rows = new List<LayerRow>();
        var table = new ResultTable("layer 1024→2816", "compute", "tokens", "Linear ms", "nf4-dq ms", "dequantize ms", "ratio");
        using var scope = NewDisposeScope();
        var weight = randn(2816, 1024) * 0.02;
        foreach (var (computeName, compute) in new[] { ("bf16", ScalarType.BFloat16), ("fp32", ScalarType.Float32) })
        {
            using var linear = nn.Linear(1024, 2816, hasBias: false, dtype: compute);
            using (no_grad()) linear.weight!.copy_(weight);
            linear.weight!.requires_grad = false;
            using var quantized = new QuantizedLinear(QuantizedTensor.Quantize(weight, QuantType.NF4, doubleQuant: true), null, compute);
            var buffer = empty(new long[] { 2816, 1024 }, compute);
            foreach (var tokens in new[] { 64, 256, 1024 })
            {
                var label = $"layer/{computeName}/{tokens}";
                if (!options.Includes(label)) continue;
                var x = randn(tokens, 1024).to_type(compute).requires_grad_(true);
                var grad = randn(tokens, 2816).to_type(compute);
                Action Pass(nn.Module<Tensor, Tensor> layer) => () =>
                {
                    using var s = NewDisposeScope();
                    x.grad?.zero_();
                    (layer.forward(x) * grad).sum().backward();
                };
                var times = Timing.MeasureInterleaved([("linear", Pass(linear)), ("quantized", Pass(quantized)), ("dequantize", () => quantized.Weight.DequantizeInto(buffer))],
                    options.Quick ? 1 : 2, options.Quick ? 3 : 10);
                var row = new LayerRow(label, computeName, tokens, times["linear"].Median, times["quantized"].Median, times["dequantize"].Median,
                    times["quantized"].Median / times["linear"].Median);
                rows.Add(row);
                table.Add(label, computeName, tokens, row.LinearMs, row.QuantizedMs, row.DequantizeMs, row.Ratio);
            }
        }
        if (rows.Count > 0) output.Write(table);
        return rows;
    }

    /// <summary>Dequantizing one nf4-dq weight into a reused buffer: the torch-ops path against the CPU kernel.</summary>
    public sealed record DequantizeRow(string Case, string Shape, string Output, string Path, int Threads, long Elements, double Ms, double MillionWeightsPerSecond);

    /// <summary>
    /// Throughput of the 4-bit dequantization itself (the double-quantized absmax is expanded once beforehand, as
    /// <see cref="QuantizedTensor.DequantizeInto"/> does first): old torch path vs <see cref="Dequantize4bitKernel"/>,
    /// bf16 and fp32 output, 1 and 2 threads, on an MLP weight of the qlora models (2816×1024) and of a 3B model (8640×3200).
    /// </summary>
    static List<DequantizeRow> DequantizeTimes(BenchmarkOptions options, TextWriter output)
    {
        var rows = new List<DequantizeRow>();
        var table = new ResultTable("dequantize nf4-dq", "output", "path", "threads", "ms", "M weights/s");
        int savedThreads = get_num_threads();
        try
        {
            foreach (var (outFeatures, inFeatures) in new[] { (2816, 1024), (8640, 3200) })
            {
                using var scope = NewDisposeScope();
                using var q = QuantizedTensor.Quantize(randn(outFeatures, inFeatures) * 0.02, QuantType.NF4, doubleQuant: true);
                var absmax = q.State.DequantizeAbsmax();
                var packed = q.Data.view(-1);
                var codebook = Codebooks.NF4.ToArray();
                var pairs = BlockwiseKernels.PairTable("nf4", Codebooks.NF4, CPU);
                foreach (var (outputName, dtype) in new[] { ("bf16", ScalarType.BFloat16), ("fp32", ScalarType.Float32) })
                {
                    var buffer = empty(q.NumElements, dtype);
                    foreach (int threads in new[] { 1, 2 })
                    {
                        foreach (var (path, run) in new (string, Action)[]
                        {
                            ("torch", () => BlockwiseKernels.Dequantize4bitTorch(packed, absmax, q.BlockSize, pairs, buffer)),
                            ("kernel", () => Dequantize4bitKernel.Run(packed, absmax, q.BlockSize, codebook, buffer)),
                        })
                        {
                            var shape = $"{outFeatures}x{inFeatures}";
                            var label = $"layer-dequantize/{shape}/{outputName}/{path}/{threads}t";
                            if (!options.Includes(label)) continue;
                            set_num_threads(threads);
                            var time = Timing.Measure(run, options.Quick ? 1 : 3, options.Quick ? 5 : 20);
                            var row = new DequantizeRow(label, shape, outputName, path, threads, q.NumElements, time.Median, q.NumElements / time.Median / 1000.0);
                            rows.Add(row);
                            table.Add(label, outputName, path, threads, row.Ms, row.MillionWeightsPerSecond);
                        }
                    }
                }
            }
        }
        finally
        {
            set_num_threads(savedThreads);
        }
        if (rows.Count > 0) output.Write(table);
        return rows;
    }

    /// <summary>nf4-dq over bf16 (and over fp32): training peak RSS, peak RSS above the runtime baseline, weights, step time.</summary>
    static Dictionary<string, double> Ratios(List<Row> rows)
    {
        var ratios = new Dictionary<string, double>();
        Row? Get(string label) => rows.FirstOrDefault(r => r.Case == label);
        foreach (var (q0, r0) in new[] { ("nf4-dq/bf16-compute", "bf16"), ("nf4-dq/fp32-compute", "bf16"), ("nf4-dq/fp32-compute", "fp32") })
        foreach (var model in Models)
        {
            var (quantized, reference) = ($"{model.Label}/{q0}", $"{model.Label}/{r0}");
            if (Get(quantized) is not { } q || Get(reference) is not { } r) continue;
            var key = $"{quantized} vs {reference}";
            ratios[key + ": train peak RSS"] = q.TrainPeakRssMb / r.TrainPeakRssMb;
            ratios[key + ": train peak RSS above baseline"] = (q.TrainPeakRssMb - q.BaselineRssMb) / (r.TrainPeakRssMb - r.BaselineRssMb);
            ratios[key + ": weight bytes"] = (double)q.WeightBytes / r.WeightBytes;
            ratios[key + ": step time"] = q.StepMedianMs / r.StepMedianMs;
        }
        return ratios;
    }

    /// <summary>A random model checkpoint in bf16 (torch's default init), written once and reused.</summary>
    static void WriteRandomModel(ModelSpec spec, TextWriter output)
    {
        var folder = spec.Folder;
        output.WriteLine($"writing a random {spec.Label} Llama to {folder}…");
        Directory.CreateDirectory(folder);
        manual_seed(1234);
        using var scope = NewDisposeScope();
        using var model = ModelFactory.Create(ModelConfig.Parse(spec.Config, folder), ModelHeadKind.CausalLM);
        var tensors = model.state_dict().Select(kv => KeyValuePair.Create(kv.Key, kv.Value.to(ScalarType.BFloat16))).ToList();
        SafetensorsWriter.Write(Path.Combine(folder, "model.safetensors"), tensors);
        File.WriteAllText(Path.Combine(folder, "config.json"), spec.Config);
    }

    /// <summary>Runs this benchmark again in a child process for one case and reads its row back.</summary>
    static Row RunChild(Case c, BenchmarkOptions options)
    {
        var result = Path.Combine(Path.GetTempPath(), $"loraps-qlora-{Environment.ProcessId}-{c.Label.Replace('/', '_')}.json");
        var start = new ProcessStartInfo(Environment.ProcessPath!) { UseShellExecute = false };
        // Under `dotnet app.dll` the process is the dotnet host; the app is the entry assembly.
        if (Path.GetFileNameWithoutExtension(Environment.ProcessPath!) == "dotnet") start.ArgumentList.Add(typeof(QloraBenchmark).Assembly.Location);
        foreach (var a in new[] { "qlora", "--out", result, "--warmup", options.Warmup.ToString(), "--iterations", options.Iterations.ToString() }) start.ArgumentList.Add(a);
        if (options.Quick) start.ArgumentList.Add("--quick");
        if (options.Threads is { } t) { start.ArgumentList.Add("--threads"); start.ArgumentList.Add(t.ToString()); }
        start.Environment[ChildVariable] = c.Label;
        using var process = Process.Start(start) ?? throw new InvalidOperationException("Could not start the child process.");
        process.WaitForExit();
        if (process.ExitCode != 0) throw new InvalidOperationException($"The {c.Label} child exited with {process.ExitCode}.");
        using var json = JsonDocument.Parse(File.ReadAllText(result));
        File.Delete(result);
        var row = json.RootElement.GetProperty("results")[0];
        return JsonSerializer.Deserialize<Row>(row.GetRawText(), new JsonSerializerOptions { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower })!;
    }

    /// <summary>In the child: load, reset the peak, train <paramref name="warmup"/> + <paramref name="steps"/> steps.</summary>
    static Row Measure(Case c, int warmup, int steps)
    {
        using (var probe = ones(8)) probe.sum().item<float>();
        double baseline = Mb(ProcessMemory.CurrentRssBytes());
        var clock = Stopwatch.StartNew();
        var loaded = ModelLoader.Load(c.Model.Folder, new ModelLoadOptions { DType = c.DType, Quantization = c.Quantize is null ? null : QuantizationOptions.Parse(c.Quantize) });
        double loadSeconds = clock.Elapsed.TotalSeconds;
        double loadPeak = Mb(ProcessMemory.PeakRssBytes());
        double afterLoad = Mb(ProcessMemory.CurrentRssBytes());
        using var model = loaded.Model;
        var quantization = ModelQuantizer.Summarize(model);
        long weightBytes = loaded.ParameterBytes;

        var adapters = new LoraAdapterSet(model);
        adapters.Add("default", new LoraConfig { Rank = Rank, Alpha = 2 * Rank, TargetModules = ModuleSelection.AllLinear }, seed: 1);
        model.train();
        using var optimizer = Optimizer.Create(adapters.TrainableNamedParameters(), new OptimizerOptions { LearningRate = 1e-3 });
        using var ids = randint(3, c.Model.VocabSize, [1, SequenceLength], generator: new Generator(7));
        var losses = new List<double>();
        var phases = new List<Phase>();
        // The first step records RSS after each phase and the peak within it (reset at each phase's start).
        void Mark(string phase)
        {
            if (losses.Count > 0) return;
            phases.Add(new Phase(phase, Mb(ProcessMemory.CurrentRssBytes()), Mb(ProcessMemory.PeakRssBytes()),
                Mb(ProcessMemory.StatusBytes("RssAnon:")), Mb(ProcessMemory.StatusBytes("RssFile:"))));
            ProcessMemory.TryResetPeak();
            if (Environment.GetEnvironmentVariable("LORAPS_QLORA_SMAPS") is { } dump) File.Copy("/proc/self/smaps", $"{dump}-{phase.Replace(' ', '_')}.txt", true);
        }
        void Step()
        {
            using var scope = NewDisposeScope();
            optimizer.ZeroGrad();
            var output = model.Forward(ids);
            Mark("forward");
            var loss = model.ComputeLoss(output, ids);
            Mark("loss");
            loss.backward();
            Mark("backward");
            optimizer.Step();
            Mark("optimizer step");
            losses.Add(loss.item<float>());
        }
        GC.Collect();
        ProcessMemory.TryResetPeak();
        Mark("before step");
        var timing = Timing.Measure(Step, warmup, steps);
        double trainPeak = Math.Max(Mb(ProcessMemory.PeakRssBytes()), phases.Max(p => p.PeakMb));
        return new Row(c.Label, loaded.ParameterCount, quantization?.Parameters ?? 0, quantization?.BitsPerParameter, weightBytes,
            optimizer.StateBytes, loadSeconds, baseline, loadPeak, afterLoad, trainPeak, timing.Median, timing.Min, steps, losses[0], losses[^1],
            MachineInfo.Current().LoadAverage, phases);
    }

    static double Mb(long? bytes) => (bytes ?? 0) / 1048576.0;
}
