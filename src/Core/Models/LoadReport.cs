using TorchSharp;
using static TorchSharp.torch;

namespace LoraPS.Models;

/// <summary>A checkpoint key that was loaded under a different model key (prefix added or removed, gamma→weight, …).</summary>
public sealed record KeyRename(string CheckpointKey, string ModelKey);

/// <summary>A parameter that shares the storage of another (<c>lm_head.weight</c> ← the token embedding).</summary>
public sealed record TiedWeight(string Key, string Source);

/// <summary>What the loader did with each key. Nothing here is an error: errors throw <see cref="ModelLoadException"/>.</summary>
public sealed record LoadReport
{
    /// <summary>Model parameters filled from the checkpoint.</summary>
    public int LoadedCount { get; init; }
    /// <summary>Task-head weights the checkpoint lacks (a classifier on a pretrained body), freshly initialised like
    /// transformers does (normal(0, initializer_range), zero bias). They need training before use.</summary>
    public IReadOnlyList<string> Missing { get; init; } = Array.Empty<string>();
    /// <summary>Checkpoint keys no model parameter takes (e.g. an MLM head when loading a classifier).</summary>
    public IReadOnlyList<string> Unexpected { get; init; } = Array.Empty<string>();
    /// <summary>Checkpoint keys that are not weights (GPT-2's attn.bias mask, rotary inv_freq, position_ids) or a
    /// redundant copy of a tied weight.</summary>
    public IReadOnlyList<string> Ignored { get; init; } = Array.Empty<string>();
    /// <summary>Model keys whose checkpoint tensor was stored (in, out) and was transposed (GPT-2 Conv1D).</summary>
    public IReadOnlyList<string> Transposed { get; init; } = Array.Empty<string>();
    public IReadOnlyList<KeyRename> Renamed { get; init; } = Array.Empty<KeyRename>();
    public IReadOnlyList<TiedWeight> Tied { get; init; } = Array.Empty<TiedWeight>();
    /// <summary>Linear layers whose weight was quantized while loading (see <see cref="ModelLoadOptions.Quantization"/>).</summary>
    public IReadOnlyList<string> Quantized { get; init; } = Array.Empty<string>();

    /// <summary>One line per category, for verbose output.</summary>
    public override string ToString()
    {
        static string List<T>(IReadOnlyList<T> items) =>
            items.Count == 0 ? "none" : string.Join(", ", items.Take(8)) + (items.Count > 8 ? $", … ({items.Count} in all)" : "");
        return $"loaded {LoadedCount}; missing (initialised): {List(Missing)}; unexpected: {List(Unexpected)}; ignored: {List(Ignored)}; " +
               $"transposed: {List(Transposed)}; renamed: {List(Renamed.Select(r => $"{r.CheckpointKey}→{r.ModelKey}").ToList())}; " +
               $"tied: {List(Tied.Select(t => $"{t.Key}←{t.Source}").ToList())}" +
               (Quantized.Count > 0 ? $"; quantized: {List(Quantized)}" : "");
    }
}

/// <summary>How to load a model.</summary>
public sealed record ModelLoadOptions
{
    /// <summary>Compute/storage type of the weights: Float32 (default), BFloat16 or Float16. Stored F32/F16/BF16 are converted.</summary>
    public ScalarType DType { get; init; } = ScalarType.Float32;
    /// <summary>Where the weights live; default CPU.</summary>
    public Device? Device { get; init; }
    /// <summary>Which head to build; default from config <c>architectures</c> (see <see cref="ModelFactory.DefaultHead"/>).</summary>
    public ModelHeadKind? Head { get; init; }
    /// <summary>Overrides config <c>num_labels</c>, for a new classification head on a pretrained body.</summary>
    public int? NumLabels { get; init; }
    public AttentionImplementation Attention { get; init; } = AttentionImplementation.Sdpa;
    /// <summary>Whether loaded parameters require gradients. Default false: LoRA training unfreezes only what it trains.</summary>
    public bool RequiresGrad { get; init; }
    /// <summary>
    /// Store the linear weights of the transformer blocks quantized (QLoRA): each weight is quantized as it is read, in
    /// <see cref="DType"/> first; the output head, embeddings and norms keep <see cref="DType"/>. Null: no quantization.
    /// </summary>
    public LoraPS.Quantization.QuantizationOptions? Quantization { get; init; }
    /// <summary>
    /// Seed for weights the checkpoint lacks (a new classification head), so that a run starting from a fresh head is
    /// reproducible. Null draws from torch's global generator, as transformers does without <c>set_seed</c>.
    /// </summary>
    public long? Seed { get; init; }
}

/// <summary>A loaded model and what loading it did. Disposing it releases the weights.</summary>
public sealed class LoadedModel : IDisposable
{
    internal LoadedModel(TransformerModel model, LoadReport report, string source)
    {
        Model = model;
        Report = report;
        Source = source;
        var quantization = LoraPS.Quantization.ModelQuantizer.Summarize(model);
        ParameterCount = model.ParameterCount() + (quantization?.Parameters ?? 0);
        ParameterBytes = model.ParameterBytes() + (quantization?.StorageBytes ?? 0);
        Quantization = quantization;
    }

    public TransformerModel Model { get; }
    public ModelConfig Config => Model.Config;
    public ModelHeadKind HeadKind => Model.HeadKind;
    public ScalarType DType => Model.DType;
    public Device Device => Model.Device;
    /// <summary>Distinct parameter elements (tied weights once; quantized weights included), at load time.</summary>
    public long ParameterCount { get; }
    /// <summary>Bytes of parameter memory (quantized weights at their stored size), at load time or after <see cref="RecordQuantization"/>.</summary>
    public long ParameterBytes { get; private set; }
    /// <summary>The quantized base weights, or null when the model is not quantized.</summary>
    public LoraPS.Quantization.QuantizationSummary? Quantization { get; private set; }

    /// <summary>
    /// Updates the counts after the base weights were quantized in memory: the full-precision bytes of those weights
    /// are replaced by their stored size (the element count is unchanged).
    /// </summary>
    internal void RecordQuantization(LoraPS.Quantization.QuantizationSummary summary)
    {
        using var probe = empty(0, dtype: summary.ComputeDType);
        ParameterBytes += summary.StorageBytes - summary.Parameters * probe.ElementSize;
        Quantization = summary;
    }
    public LoadReport Report { get; }
    /// <summary>The directory or file the weights came from.</summary>
    public string Source { get; }

    public void Dispose() => Model.Dispose();
}

/// <summary>The checkpoint does not fit the model its config describes; the message names keys and shapes.</summary>
public sealed class ModelLoadException : Exception
{
    public ModelLoadException(string message, Exception? inner = null) : base(message, inner) { }
}
