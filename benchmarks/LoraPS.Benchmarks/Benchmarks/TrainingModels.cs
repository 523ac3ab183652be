using LoraPS.Adapters;
using LoraPS.Data;
using LoraPS.Models;
using LoraPS.Tokenization;
using LoraPS.Training;
using static TorchSharp.torch;

namespace LoraPS.Benchmarks.Benchmarks;

/// <summary>The models, adapters, data and trainer settings the training benchmarks share.</summary>
internal static class TrainingModels
{
    public const string Stories = "stories260K";
    public const string RandomLlama = "random-llama-8x512";

    /// <summary>
    /// The hidden-512 model: 8 layers, 8 query / 4 key-value heads (head dim 64), SwiGLU 1376, vocab 32000 (Llama-2's),
    /// the same config as the generation benchmark. Weights are TorchSharp's default init, seeded.
    /// </summary>
    public const string RandomLlamaConfig = """
        {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": 32000, "hidden_size": 512,
         "intermediate_size": 1376, "num_hidden_layers": 8, "num_attention_heads": 8, "num_key_value_heads": 4,
         "max_position_embeddings": 1024, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "hidden_act": "silu",
         "tie_word_embeddings": false, "bos_token_id": 1, "eos_token_id": 2}
        """;

    /// <summary>Loads or builds <paramref name="name"/> in <paramref name="precision"/>.</summary>
    public static LoraModel Load(string name, Precision precision)
    {
        if (name == Stories) return LoraModel.Load(LoraModel.BundledModelPath, precision);
        if (name != RandomLlama) throw new ArgumentException($"Unknown benchmark model '{name}'.", nameof(name));
        manual_seed(1234);
        var network = ModelFactory.Create(ModelConfig.Parse(RandomLlamaConfig, RandomLlama), ModelHeadKind.CausalLM,
            dtype: LoraModel.ToScalarType(precision));
        // Only the trainer's run manifest looks at the tokenizer; the bundled one stands in.
        return LoraModel.FromNetwork(network, TextTokenizer.Load(LoraModel.BundledModelPath), RandomLlama);
    }

    /// <summary>LitGPT's LoRA settings from the LoRA-insights article (α = 2r, dropout 0.05) on every linear layer but the head.</summary>
    public static LoraConfig Adapter(int rank) =>
        new() { Rank = rank, Alpha = 2 * rank, Dropout = 0.05, TargetModules = ModuleSelection.AllLinear };

    /// <summary>Language-modelling examples of random token ids, all <paramref name="length"/> long (no padding).</summary>
    public static PreparedData RandomTokens(int count, int length, int vocab, ulong seed)
    {
        var generator = new Generator(seed);
        var examples = Enumerable.Range(0, count).Select(_ =>
        {
            using var ids = randint(3, vocab, [length], generator: generator, dtype: ScalarType.Int64);
            var array = ids.data<long>().ToArray();
            return new TokenizedExample(array, (long[])array.Clone(), 0);
        }).ToList();
        return new PreparedData(DatasetFormat.Text, null, [], new TokenizedDataset(examples), [], null, 0, $"random-tokens-{count}x{length}-{seed}");
    }

    /// <summary>A run that only trains: no validation, no checkpoints, one micro-batch per optimizer step.</summary>
    public static TrainingOptions TrainOnly(string folder, int microBatch, long steps) => new()
    {
        OutputDirectory = folder,
        MaxSteps = steps,
        GlobalBatchSize = microBatch,
        MicroBatchSize = microBatch,
        EvalInterval = 0,
        EvaluateAtEnd = false,
        SaveInterval = 0,
    };

    /// <summary>A fresh temporary folder for a run; the caller deletes it.</summary>
    public static string TempRunFolder() => Path.Combine(Path.GetTempPath(), "loraps-bench-" + Guid.NewGuid().ToString("N")[..12]);
}

/// <summary>
/// Matmul FLOPs of one LoRA training step per token for a Llama-family model with LoRA on every linear layer but the
/// head, counting multiply and add as 2 FLOPs. Only the adapters train, so:
/// <list type="bullet">
/// <item>frozen base Linear (in→out): forward 2·in·out, backward only dL/dx 2·in·out (no weight gradient); layer 0's
/// q/k/v get no dL/dx (their input, the normed embedding, needs no gradient);</item>
/// <item>LoRA on that layer: forward 2r·(in+out); backward dB 2r·out, d(x·Aᵀ) 2r·out, dA 2r·in, dL/dx 2r·in
/// (not for layer 0's q/k/v) — 6r·(in+out) in all;</item>
/// <item>lm_head (frozen, no LoRA): forward 2·d·V + dL/dx 2·d·V;</item>
/// <item>attention per layer, causal part only: query t meets t+1 keys, so QKᵀ and P·V cost 4·(t+1)·H·hd forward,
/// twice that backward (dP, dV, dQ, dK); averaged over t = 0..T−1: 6·(T+1)·H·hd per token.</item>
/// </list>
/// Norms, RoPE, SiLU, softmax, dropout, the loss and the optimizer are not counted (they are elementwise).
/// </summary>
internal static class TrainingFlops
{
    public static double PerToken(ModelConfig c, int rank, int sequenceLength)
    {
        long d = c.HiddenSize, q = (long)c.NumAttentionHeads * c.HeadDim, kv = (long)c.NumKeyValueHeads * c.HeadDim, i = c.IntermediateSize;
        (long In, long Out, bool FirstLayerInput)[] perLayer =
            [(d, q, true), (d, kv, true), (d, kv, true), (q, d, false), (d, i, false), (d, i, false), (i, d, false)];
        double total = 0;
        for (int layer = 0; layer < c.NumHiddenLayers; layer++)
        {
            foreach (var (inF, outF, firstLayerInput) in perLayer)
            {
                bool inputGrad = !(layer == 0 && firstLayerInput);
                total += 2.0 * inF * outF * (inputGrad ? 2 : 1);
                total += 2.0 * rank * inF + 2.0 * rank * outF      // forward: x·Aᵀ, ·Bᵀ
                       + 2.0 * rank * outF * 2                        // dB, d(x·Aᵀ)
                       + 2.0 * rank * inF * (inputGrad ? 2 : 1);      // dA, dL/dx
            }
            total += 6.0 * (sequenceLength + 1) * q;
        }
        total += 2.0 * d * c.VocabSize * 2;
        return total;
    }
}
