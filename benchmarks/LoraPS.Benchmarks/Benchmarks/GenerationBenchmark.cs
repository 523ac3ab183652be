using LoraPS.Benchmarks.Harness;
using LoraPS.Generation;
using LoraPS.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace LoraPS.Benchmarks.Benchmarks;

/// <summary>
/// Greedy generation speed with and without the KV cache: the bundled stories260K (real weights) and a random
/// 8-layer, hidden-512 Llama (GQA 8/4, vocab 32000). Each case prefills a prompt of <see cref="PromptTokens"/> tokens and
/// decodes <see cref="NewTokens"/> tokens; tokens/s counts generated tokens over the whole call (prefill included).
/// Without the cache every step recomputes the whole sequence, so the gap grows with the length.
/// </summary>
public sealed class GenerationBenchmark : IBenchmark
{
    const int PromptTokens = 16;
    const int NewTokens = 128;

    public string Name => "generation";

    public string Description => $"greedy generation tokens/s with and without KV cache ({PromptTokens}-token prompt, {NewTokens} new tokens)";

    sealed record Row(string Model, long Parameters, string Precision, string Cache, double MedianMs, double MinMs, int Iterations,
        double TokensPerSecond, double CacheSpeedup, double? PeakRssMb);

    const string RandomLlamaConfig = """
        {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": 32000, "hidden_size": 512,
         "intermediate_size": 1376, "num_hidden_layers": 8, "num_attention_heads": 8, "num_key_value_heads": 4,
         "max_position_embeddings": 1024, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "hidden_act": "silu",
         "tie_word_embeddings": false, "bos_token_id": 1, "eos_token_id": 2}
        """;

    public BenchmarkReport Run(BenchmarkOptions options, TextWriter output)
    {
        int newTokens = options.Quick ? 16 : NewTokens;
        var rows = new List<Row>();
        var table = new ResultTable("model", "params", "dtype", "cache", "median ms", "tokens/s", "cache speedup", "peak RSS MB");
        manual_seed(1234);
        var cases = new List<(string Name, Func<TransformerModel> Build)>
        {
            ("stories260K", () => ModelLoader.Load(LoraModel.BundledModelPath).Model),
            ("random-llama-8x512", () => ModelFactory.Create(ModelConfig.Parse(RandomLlamaConfig, "random-llama-8x512"), ModelHeadKind.CausalLM)),
        };
        foreach (var (name, build) in cases)
        {
            if (!options.Includes(name)) continue;
            using var model = build();
            var prompt = Enumerable.Range(0, PromptTokens).Select(i => (long)(3 + (i * 37) % (model.Config.VocabSize - 3))).ToList();
            var none = new HashSet<long>();
            var results = new Dictionary<string, TimingResult>();
            var peaks = new Dictionary<string, double?>();
            foreach (var useCache in new[] { true, false })
            {
                var label = useCache ? "kv-cache" : "no-cache";
                void Step()
                {
                    var (tokens, _) = TextGenerator.GenerateTokens(model, prompt, newTokens, new SamplingOptions(), none, useCache);
                    if (tokens.Count != newTokens) throw new InvalidOperationException($"generated {tokens.Count} tokens, expected {newTokens}");
                }
                ProcessMemory.TryResetPeak();
                results[label] = Timing.Measure(Step, options.Warmup, options.Iterations);
                peaks[label] = ProcessMemory.PeakRssBytes() is { } b ? b / 1048576.0 : null;
            }
            foreach (var label in new[] { "kv-cache", "no-cache" })
            {
                var t = results[label];
                double tokensPerSecond = newTokens / (t.Median / 1000);
                double speedup = results["no-cache"].Median / results["kv-cache"].Median;
                rows.Add(new Row(name, model.ParameterCount(), "fp32", label, t.Median, t.Min, t.Milliseconds.Count, tokensPerSecond, speedup, peaks[label]));
                table.Add(name, model.ParameterCount(), "fp32", label, t.Median, tokensPerSecond, label == "kv-cache" ? speedup : 1.0, peaks[label] ?? double.NaN);
            }
        }
        output.Write(table);
        return new BenchmarkReport(Name, new { options.Warmup, options.Iterations, PromptTokens, NewTokens = newTokens, Decoding = "greedy" }, rows);
    }
}
