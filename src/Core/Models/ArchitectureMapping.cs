using System.Text.RegularExpressions;
using TorchSharp;

namespace LoraPS.Models;

/// <summary>
/// How one architecture's checkpoint keys relate to LoraPS module paths — data, read by <see cref="ModelLoader"/>.
/// </summary>
/// <param name="BasePrefix">transformers' <c>base_model_prefix</c>: the body's name inside head models. A checkpoint
/// saved from the bare body (official gpt2, sentence-transformers BERT) lacks it, one saved from a head model has it.</param>
/// <param name="Renames">Checkpoint-key rewrites applied before matching (regex → replacement).</param>
/// <param name="Ignored">Keys that are not weights: non-persistent buffers older checkpoints carry.</param>
/// <param name="FanInFanOut">Module paths (within the body) whose weight is stored (in, out) and is transposed on load.</param>
/// <param name="TaskHeads">Head modules a checkpoint may lack because they are trained from scratch for a task
/// (a classifier on a pretrained body); missing ones are freshly initialised, as transformers does, and reported.</param>
internal sealed record ArchitectureMapping(
    string BasePrefix,
    IReadOnlyList<(Regex Pattern, string Replacement)> Renames,
    IReadOnlyList<Regex> Ignored,
    Regex? FanInFanOut,
    IReadOnlyList<string> TaskHeads)
{
    private static readonly Regex RotaryBuffer = new(@"(^|\.)rotary_emb\.inv_freq$", RegexOptions.Compiled);

    public static readonly ArchitectureMapping Llama = new(
        "model",
        Array.Empty<(Regex, string)>(),
        new[] { RotaryBuffer },
        null,
        new[] { "score" });

    public static readonly ArchitectureMapping Gpt2 = new(
        "transformer",
        Array.Empty<(Regex, string)>(),
        // h.N.attn.bias is GPT-2's [1, 1, n_positions, n_positions] causal-mask buffer, not c_attn's bias.
        new[] { new Regex(@"(^|\.)h\.\d+\.attn\.(bias|masked_bias)$", RegexOptions.Compiled) },
        // Conv1D layers: weight stored (in, out), y = x·W + b.
        new Regex(@"(^|\.)h\.\d+\.(attn\.c_attn|attn\.c_proj|mlp\.c_fc|mlp\.c_proj)$", RegexOptions.Compiled),
        new[] { "score" });

    private static readonly (Regex, string)[] LayerNormGammaBeta = {
        // TensorFlow-era BERT checkpoints (bert-base-uncased lineage) name LayerNorm parameters gamma/beta.
        (new Regex(@"LayerNorm\.gamma$", RegexOptions.Compiled), "LayerNorm.weight"),
        (new Regex(@"LayerNorm\.beta$", RegexOptions.Compiled), "LayerNorm.bias"),
    };

    private static readonly Regex[] EncoderBuffers = {
        new(@"(^|\.)embeddings\.(position_ids|token_type_ids)$", RegexOptions.Compiled),
    };

    public static readonly ArchitectureMapping Bert = new("bert", LayerNormGammaBeta, EncoderBuffers, null, new[] { "classifier" });

    public static readonly ArchitectureMapping Roberta = new("roberta", LayerNormGammaBeta, EncoderBuffers, null, new[] { "classifier" });

    public static ArchitectureMapping For(ModelArchitecture architecture) => architecture switch {
        ModelArchitecture.Llama or ModelArchitecture.Mistral or ModelArchitecture.Qwen2 => Llama,
        ModelArchitecture.Gpt2 => Gpt2,
        ModelArchitecture.Bert => Bert,
        ModelArchitecture.Roberta => Roberta,
        _ => throw new ArgumentOutOfRangeException(nameof(architecture), architecture, null),
    };

    /// <summary>Applies <see cref="Renames"/>; returns the key unchanged when none matches.</summary>
    public string Rename(string key)
    {
        foreach (var (pattern, replacement) in Renames)
            key = pattern.Replace(key, replacement);
        return key;
    }

    public bool IsIgnored(string key) => Ignored.Any(r => r.IsMatch(key));

    /// <summary>True when the parameter <paramref name="key"/> (module path + ".weight") is stored transposed.</summary>
    public bool IsTransposed(string key) =>
        FanInFanOut is not null && key.EndsWith(".weight", StringComparison.Ordinal) && FanInFanOut.IsMatch(key[..^".weight".Length]);

    /// <summary>True when <paramref name="key"/> belongs to a task head that may be initialised fresh.</summary>
    public bool IsTaskHead(string key) => TaskHeads.Any(h => key == h || key.StartsWith(h + ".", StringComparison.Ordinal));

    /// <summary>Paths of the fan-in-fan-out modules in <paramref name="model"/> (matched by path, whatever the module now is).</summary>
    public IReadOnlySet<string> FanInFanOutPaths(torch.nn.Module model) =>
        FanInFanOut is null
            ? new HashSet<string>()
            : model.named_modules().Select(m => m.name).Where(name => FanInFanOut.IsMatch(name)).ToHashSet();
}
