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
/// QLoRA's trade-off: peak process memory and time per LoRA training step for an fp32, a bf16 and an nf4-dq base of
/// random Llamas. Two small ones share their blocks (hidden 1024, 12 layers, MLP 2816, untied head) with vocabularies
/// of 32000 (220M parameters) and 8000 (171M); an opt-in 3.4B one has open_llama_3b's shape, where the base weights
/// dominate the peak as in the 7B models QLoRA was made for, and trains with and without gradient checkpointing. Each
/// configuration runs in a fresh child process, so one case's peak cannot hide in another's: the child loads the
/// checkpoint (written once, bf16, to a temp folder), resets the peak RSS, then trains, recording RSS after each phase of
/// the first step. <c>LORAPS_QLORA_SMAPS=/path/prefix</c> also copies <c>/proc/self/smaps</c> at each phase, to see
/// which mappings (glibc heap, mmapped tensors, files) grew.
/// </summary>
/// <remarks>
/// A step is forward + backward + AdamW on a LoRA adapter (<see cref="TrainSetup"/>: the small models train rank 16 on
/// every linear layer but the head on one 64-token sequence; the 3B model LitGPT's default rank 8 on query and value on
/// one 512-token sequence). The child is this program again, told which case to run by <see cref="ChildVariable"/>; it
/// writes its row as JSON to the --out file the parent gives it.
/// </remarks>
public sealed class QloraBenchmark : IBenchmark
{
    const string ChildVariable = "LORAPS_QLORA_CHILD_CASE";

    public string Name => "qlora";

    public string Description => "QLoRA: peak RSS and LoRA step time for fp32, bf16 and nf4-dq bases of random Llamas (171M, 220M; 3.4B with --only 3b; fresh process per case)";

    /// <summary>
    /// One random Llama: its label, config.json, how it is trained, and the folder it is written to once. An
    /// <paramref name="OptIn"/> model runs only when <c>--only</c> names it (the 3B model takes ≈ 15 minutes here).
    /// </summary>
    sealed record ModelSpec(string Label, string Config, TrainSetup Setup, bool OptIn = false)
    {
        public string Folder => Path.Combine(Path.GetTempPath(), $"loraps-qlora-bench-llama-{Label}");
        public int VocabSize => JsonDocument.Parse(Config).RootElement.GetProperty("vocab_size").GetInt32();
    }

    /// <summary>
    /// A step's shape: micro-batch × sequence length, timed steps after one warm-up, and the adapter (rank, alpha, and the
    /// targets: null means the architecture's query and value projections, LitGPT's and PEFT's default).
    /// </summary>
    sealed record TrainSetup(int Batch, int SequenceLength, int Steps, int Rank, double Alpha, ModuleSelection? Targets)
    {
        public string TargetsName => Targets is null ? "q_proj,v_proj" : Targets.ToString();
    }

    /// <summary>One configuration: the model, the compute dtype, the base-weight quantization, and activation checkpointing.</summary>
    sealed record Case(ModelSpec Model, string Name, ScalarType DType, string? Quantize, bool GradientCheckpointing = false)
    {
        public string Label => $"{Model.Label}/{Name}{(GradientCheckpointing ? "+ckpt" : "")}";
    }

    /// <summary>What a child measures.</summary>
    public sealed record Row(string Case, long Parameters, long QuantizedParameters, double? BaseBitsPerParameter, long WeightBytes,
        long OptimizerStateBytes, double LoadSeconds, double BaselineRssMb, double LoadPeakRssMb, double AfterLoadRssMb, double TrainPeakRssMb,
        double StepMedianMs, double StepMinMs, int Steps, double FirstLoss, double LastLoss, double? LoadAverage, List<Phase> Phases,
        int Batch = 0, int SequenceLength = 0, bool GradientCheckpointing = false, double TokensPerSecond = 0);

    /// <summary>RSS after a phase of the first training step, and the peak within it (the peak is reset before each phase).</summary>
    /// <remarks><paramref name="HeapInUseMb"/>: bytes glibc's malloc has handed out and not had back (mallinfo2), where RSS also counts freed heap it kept.</remarks>
    public sealed record Phase(string Name, double RssMb, double PeakMb, double AnonMb, double FileMb, double? HeapInUseMb = null);

    // Same blocks in both: 12 layers of hidden 1024, MLP 2816 (154.1M linear weights). With vocab 32000 and an untied
    // head, embedding + head are 30% of the parameters and stay unquantized; with vocab 8000 they are 9.6%, closer to a
    // 7B Llama's 3% (2 × 32000 × 4096 of 6.7B), where QLoRA's memory saving is meant to be judged.
    static string LlamaConfig(int vocab, int hidden = 1024, int intermediate = 2816, int layers = 12, int heads = 16) => $$"""
        {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": {{vocab}}, "hidden_size": {{hidden}},
         "intermediate_size": {{intermediate}}, "num_hidden_layers": {{layers}}, "num_attention_heads": {{heads}}, "num_key_value_heads": {{heads}},
         "max_position_embeddings": 2048, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "hidden_act": "silu",
         "tie_word_embeddings": false, "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "bfloat16"}
        """;

    // The small models: one 64-token sequence, rank 16 on every linear layer but the head.
    static readonly TrainSetup SmallSetup = new(Batch: 1, SequenceLength: 64, Steps: 3, Rank: 16, Alpha: 32, Targets: ModuleSelection.AllLinear);

    // The 3B model has open_llama_3b's shape (hidden 3200, 26 layers, MLP 8640, vocab 32000: 3.43B parameters, the
    // embedding and head 6% of them, near Llama-2-7B's 4%), where the base weights dominate the peak as in the article's
    // 7B runs. It trains as LitGPT's finetune_lora defaults do (rank 8, alpha 16, query and value; the setup behind the
    // article's 21.3 → 14.2 GB), on one 512-token sequence (LitGPT's qlora.yaml max_seq_length).
    static readonly TrainSetup LargeSetup = new(Batch: 1, SequenceLength: 512, Steps: 2, Rank: 8, Alpha: 16, Targets: null);

    static readonly ModelSpec[] Models =
    [
        new("220m-v32k", LlamaConfig(32000), SmallSetup),
        new("171m-v8k", LlamaConfig(8000), SmallSetup),
        new("3b-v32k", LlamaConfig(32000, hidden: 3200, intermediate: 8640, layers: 26, heads: 32), LargeSetup, OptIn: true),
    ];

    static readonly Case[] Cases = Models.SelectMany(m => m.OptIn
        ? new Case[]
        {
            // QLoRA trains with gradient checkpointing (spec notes §3.5; PEFT's prepare_model_for_kbit_training turns it on),
            // and so is compared with the same setting; the two cases without it show what activations alone cost.
            new(m, "fp32", ScalarType.Float32, null, GradientCheckpointing: true),
            new(m, "bf16", ScalarType.BFloat16, null, GradientCheckpointing: true),
            new(m, "nf4-dq/bf16-compute", ScalarType.BFloat16, "nf4-dq", GradientCheckpointing: true),
            new(m, "bf16", ScalarType.BFloat16, null),
            new(m, "nf4-dq/bf16-compute", ScalarType.BFloat16, "nf4-dq"),
        }
        : new Case[]
        {
            new(m, "fp32", ScalarType.Float32, null),
            new(m, "bf16", ScalarType.BFloat16, null),
            new(m, "nf4-dq/bf16-compute", ScalarType.BFloat16, "nf4-dq"),
            new(m, "nf4-dq/fp32-compute", ScalarType.Float32, "nf4-dq"),
        }).ToArray();

    /// <summary>Whether a case runs: the opt-in model's only when <c>--only</c> selects it.</summary>
    static bool Selected(Case c, BenchmarkOptions options) => options.Includes(c.Label) && (!c.Model.OptIn || options.Only is not null);

    public BenchmarkReport Run(BenchmarkOptions options, TextWriter output)
    {
        int warmup = Math.Min(options.Warmup, 1);
        if (Environment.GetEnvironmentVariable(ChildVariable) is { } child)
        {
            var c = Cases.Single(c => c.Label == child);
            int steps = options.Quick ? 1 : Math.Min(options.Iterations, c.Model.Setup.Steps);
            // Every case gets the same warm-up and steps (an earlier version ran bf16 once: its GEMMs were 50-100× slower
            // under heavy load, but at load ≈ 2 a bf16 step costs about what an fp32 one does on this CPU).
            var row = Measure(c, warmup, steps);
            return new BenchmarkReport(Name, new { Child = child }, [row]);
        }

        var rows = new List<Row>();
        var table = new ResultTable("case", "params", "bits/param", "weights MB", "baseline MB", "load peak MB", "after load MB", "train peak MB", "step ms", "tokens/s", "loss");
        foreach (var c in Cases)
        {
            if (!Selected(c, options)) continue;
            if (!File.Exists(Path.Combine(c.Model.Folder, "model.safetensors"))) WriteRandomModel(c.Model, output);
            output.WriteLine($"running {c.Label} in a child process…");
            var row = RunChild(c, options);
            rows.Add(row);
            table.Add(c.Label, row.Parameters, row.BaseBitsPerParameter ?? 16.0 * (c.DType == ScalarType.Float32 ? 2 : 1), row.WeightBytes / 1048576.0,
                row.BaselineRssMb, row.LoadPeakRssMb, row.AfterLoadRssMb, row.TrainPeakRssMb, row.StepMedianMs, row.TokensPerSecond, $"{row.FirstLoss:F3}→{row.LastLoss:F3}");
        }
        output.Write(table);
        var layers = LayerTimes(options, output);
        var dequantize = DequantizeTimes(options, output);
        var quantize = QuantizeTimes(options, output);
        var ratios = Ratios(rows);
        foreach (var (name, value) in ratios) output.WriteLine($"{name}: {value:F3}");
        var setups = Models.ToDictionary(m => m.Label, m => new
        {
            m.Setup.Batch, m.Setup.SequenceLength, m.Setup.Rank, m.Setup.Alpha, Targets = m.Setup.TargetsName, Warmup = warmup,
            Steps = options.Quick ? 1 : Math.Min(options.Iterations, m.Setup.Steps), Config = JsonDocument.Parse(m.Config).RootElement,
        });
        return new BenchmarkReport(Name, new { Models = setups },
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

    /// <summary>
    /// Each quantized case over the unquantized bf16 and fp32 cases of the same model and checkpointing: training peak
    /// RSS, the whole process's peak (load included), peak RSS above the runtime baseline, weight bytes, step time.
    /// </summary>
    static Dictionary<string, double> Ratios(List<Row> rows)
    {
        var ratios = new Dictionary<string, double>();
        var cases = Cases.ToDictionary(c => c.Label);
        foreach (var q in rows.Where(r => cases[r.Case].Quantize is not null))
        {
            var qc = cases[q.Case];
            foreach (var r in rows.Where(r => cases[r.Case] is { Quantize: null } rc && rc.Model == qc.Model && rc.GradientCheckpointing == qc.GradientCheckpointing))
            {
                var key = $"{q.Case} vs {r.Case}";
                ratios[key + ": train peak RSS"] = q.TrainPeakRssMb / r.TrainPeakRssMb;
                ratios[key + ": process peak RSS"] = Math.Max(q.LoadPeakRssMb, q.TrainPeakRssMb) / Math.Max(r.LoadPeakRssMb, r.TrainPeakRssMb);
                ratios[key + ": train peak RSS above baseline"] = (q.TrainPeakRssMb - q.BaselineRssMb) / (r.TrainPeakRssMb - r.BaselineRssMb);
                ratios[key + ": weight bytes"] = (double)q.WeightBytes / r.WeightBytes;
                ratios[key + ": step time"] = q.StepMedianMs / r.StepMedianMs;
            }
        }
        return ratios;
    }

    /// <summary>
    /// A random Llama checkpoint in bf16, written once and reused. Tensors are generated and written one at a time, so a
    /// 3B model never has to exist in memory: linear weights uniform in ±1/√in (torch's default Linear init), the
    /// embedding standard normal, norms ones.
    /// </summary>
    static void WriteRandomModel(ModelSpec spec, TextWriter output)
    {
        var folder = spec.Folder;
        output.WriteLine($"writing a random {spec.Label} Llama to {folder}…");
        Directory.CreateDirectory(folder);
        var c = ModelConfig.Parse(spec.Config, folder);
        long kv = (long)c.NumKeyValueHeads * c.HeadDim, q = (long)c.NumAttentionHeads * c.HeadDim;
        var tensors = new List<(string Name, long[] Shape)> { ("model.embed_tokens.weight", [c.VocabSize, c.HiddenSize]) };
        for (int i = 0; i < c.NumHiddenLayers; i++)
        {
            var p = $"model.layers.{i}.";
            tensors.AddRange(new (string, long[])[]
            {
                (p + "input_layernorm.weight", [c.HiddenSize]), (p + "post_attention_layernorm.weight", [c.HiddenSize]),
                (p + "self_attn.q_proj.weight", [q, c.HiddenSize]), (p + "self_attn.k_proj.weight", [kv, c.HiddenSize]),
                (p + "self_attn.v_proj.weight", [kv, c.HiddenSize]), (p + "self_attn.o_proj.weight", [c.HiddenSize, q]),
                (p + "mlp.gate_proj.weight", [c.IntermediateSize, c.HiddenSize]), (p + "mlp.up_proj.weight", [c.IntermediateSize, c.HiddenSize]),
                (p + "mlp.down_proj.weight", [c.HiddenSize, c.IntermediateSize]),
            });
        }
        tensors.Add(("model.norm.weight", [c.HiddenSize]));
        tensors.Add(("lm_head.weight", [c.VocabSize, c.HiddenSize]));

        var header = new System.Text.StringBuilder("{\"__metadata__\":{\"format\":\"pt\"}");
        long offset = 0;
        foreach (var (name, shape) in tensors)
        {
            long bytes = shape.Aggregate(2L, (a, b) => a * b);
            header.Append($",\"{name}\":{{\"dtype\":\"BF16\",\"shape\":[{string.Join(",", shape)}],\"data_offsets\":[{offset},{offset + bytes}]}}");
            offset += bytes;
        }
        header.Append('}');
        while (header.Length % 8 != 0) header.Append(' ');
        var headerBytes = System.Text.Encoding.UTF8.GetBytes(header.ToString());

        var generator = new Generator(1234);
        SafetensorsWriter.WriteAtomically(Path.Combine(folder, "model.safetensors"), stream =>
        {
            stream.Write(BitConverter.GetBytes((ulong)headerBytes.Length));
            stream.Write(headerBytes);
            foreach (var (name, shape) in tensors)
            {
                using var scope = NewDisposeScope();
                var t = shape.Length == 1 ? ones(shape, ScalarType.BFloat16)
                    : name.EndsWith("embed_tokens.weight") ? randn(shape, generator: generator).to(ScalarType.BFloat16)
                    : ((rand(shape, generator: generator) * 2 - 1) / Math.Sqrt(shape[1])).to(ScalarType.BFloat16);
                TensorBytes.WriteTo(t, stream);
            }
        });
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

        var setup = c.Model.Setup;
        var adapters = new LoraAdapterSet(model);
        adapters.Add("default", new LoraConfig { Rank = setup.Rank, Alpha = setup.Alpha, TargetModules = setup.Targets }, seed: 1);
        model.train();
        model.GradientCheckpointing = c.GradientCheckpointing;
        using var optimizer = Optimizer.Create(adapters.TrainableNamedParameters(), new OptimizerOptions { LearningRate = 1e-3 });
        using var ids = randint(3, c.Model.VocabSize, [setup.Batch, setup.SequenceLength], generator: new Generator(7));
        var losses = new List<double>();
        var phases = new List<Phase>();
        // The first step records RSS after each phase and the peak within it (reset at each phase's start).
        void Mark(string phase)
        {
            if (losses.Count > 0) return;
            phases.Add(new Phase(phase, Mb(ProcessMemory.CurrentRssBytes()), Mb(ProcessMemory.PeakRssBytes()),
                Mb(ProcessMemory.StatusBytes("RssAnon:")), Mb(ProcessMemory.StatusBytes("RssFile:")), LoraPS.Runtime.NativeHeap.AllocatedBytes() / 1048576.0));
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
            MachineInfo.Current().LoadAverage, phases, setup.Batch, setup.SequenceLength, c.GradientCheckpointing,
            setup.Batch * setup.SequenceLength / (timing.Median / 1000.0));
    }

    static double Mb(long? bytes) => (bytes ?? 0) / 1048576.0;
}
