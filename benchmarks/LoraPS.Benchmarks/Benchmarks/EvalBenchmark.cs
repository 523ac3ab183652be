using LoraPS.Benchmarks.Harness;
using LoraPS.Evaluation;
using LoraPS.Models;
using static TorchSharp.torch;

namespace LoraPS.Benchmarks.Benchmarks;

/// <summary>
/// Evaluation throughput: scored documents/s and model tokens/s for BLiMP (two whole sentences per pair, empty
/// context) and MMLU (0-shot, four one-letter choices after a long prompt) on the bundled stories260K and on a random
/// 8-layer hidden-512 Llama (vocab 32000, stories260K's tokenizer), at batch size 1 and 16. Each timing is a whole
/// task.Evaluate with -Limit (data reading included). "rows" are forward rows: fewer than requests when choices share
/// their context.
/// </summary>
public sealed class EvalBenchmark : IBenchmark
{
    public string Name => "eval";

    public string Description => "Invoke-LoraEval throughput: examples/s and tokens/s for blimp_causative and mmlu_global_facts";

    sealed record Row(string Model, string Task, int BatchSize, int Documents, int Requests, long ForwardRows, long Tokens,
        double MedianMs, double ExamplesPerSecond, double TokensPerSecond, double? PeakRssMb);

    const string RandomLlamaConfig = """
        {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": 32000, "hidden_size": 512,
         "intermediate_size": 1376, "num_hidden_layers": 8, "num_attention_heads": 8, "num_key_value_heads": 4,
         "max_position_embeddings": 1024, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "hidden_act": "silu",
         "tie_word_embeddings": false, "bos_token_id": 1, "eos_token_id": 2}
        """;

    public BenchmarkReport Run(BenchmarkOptions options, TextWriter output)
    {
        var rows = new List<Row>();
        var table = new ResultTable("model", "task", "batch", "docs", "requests", "rows", "median ms", "examples/s", "tokens/s", "peak RSS MB");
        manual_seed(1234);
        using var stories = LoraModel.Load(LoraModel.BundledModelPath);
        var cases = new List<(string Name, Func<TransformerModel> Build, int BlimpDocs, int MmluDocs)>
        {
            ("stories260K", () => stories.Network, 200, 50),
            ("random-llama-8x512", () => ModelFactory.Create(ModelConfig.Parse(RandomLlamaConfig, "random-llama-8x512"), ModelHeadKind.CausalLM), 40, 8),
        };
        foreach (var (name, build, blimpDocs, mmluDocs) in cases)
        {
            if (!options.Includes(name)) continue;
            var model = build();
            foreach (var (taskName, docs) in new[] { ("blimp_causative", blimpDocs), ("mmlu_global_facts", mmluDocs) })
            {
                int limit = options.Quick ? Math.Max(2, docs / 10) : docs;
                var task = EvalTaskRegistry.Create(taskName);
                foreach (var batch in new[] { 1, 16 })
                {
                    CausalLmScorer? last = null;
                    TaskResult? result = null;
                    void Step()
                    {
                        last = new CausalLmScorer(model, stories.Tokenizer, new ScorerOptions { BatchSize = batch });
                        result = task.Evaluate(new EvalContext { Scorer = last, Limit = limit });
                    }
                    ProcessMemory.TryResetPeak();
                    var t = Timing.Measure(Step, options.Warmup, options.Iterations);
                    double? peak = ProcessMemory.PeakRssBytes() is { } b ? b / 1048576.0 : null;
                    int requests = taskName.StartsWith("blimp") ? 2 * limit : 4 * limit;
                    double seconds = t.Median / 1000;
                    var row = new Row(name, taskName, batch, result!.N, requests, last!.ForwardRows, last.TokensProcessed, t.Median,
                        result.N / seconds, last.TokensProcessed / seconds, peak);
                    rows.Add(row);
                    table.Add(name, taskName, batch, row.Documents, requests, row.ForwardRows, row.MedianMs, row.ExamplesPerSecond, row.TokensPerSecond, peak ?? double.NaN);
                }
            }
            if (!ReferenceEquals(model, stories.Network)) model.Dispose();
        }
        output.Write(table);
        return new BenchmarkReport(Name, new { options.Warmup, options.Iterations, NumFewshot = 0, Tokenizer = "stories260K" }, rows);
    }
}
