using LoraPS.Adapters;
using LoraPS.Models;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace LoraPS.Quantization;

/// <summary>What a model's quantized base weights take, as <see cref="ModelQuantizer.Summarize"/> measures it.</summary>
/// <param name="Format"><c>nf4</c>, <c>nf4-dq</c>, <c>fp4</c>, <c>fp4-dq</c> or <c>int8</c>.</param>
/// <param name="Layers">Linear layers stored quantized.</param>
/// <param name="Parameters">Weight elements stored quantized.</param>
/// <param name="StorageBytes">Bytes those weights take: codes plus absmax (and nested absmax).</param>
/// <param name="ComputeDType">The dtype they are dequantized to for each matmul.</param>
public sealed record QuantizationSummary(string Format, int Layers, long Parameters, long StorageBytes, ScalarType ComputeDType)
{
    /// <summary>8 · bytes / elements: 4.5 for NF4/FP4 with blocks of 64, about 4.13 with double quantization, 8 + 32/in for Int8.</summary>
    public double BitsPerParameter => Parameters == 0 ? 0 : 8.0 * StorageBytes / Parameters;

    public double BytesPerParameter => Parameters == 0 ? 0 : (double)StorageBytes / Parameters;
}

/// <summary>
/// Puts a model's frozen linear weights into a quantized format (QLoRA's base model): every Linear layer except the
/// output head (and anything in <see cref="QuantizationOptions.SkipModules"/>) becomes a <see cref="QuantizedLinear"/>;
/// embeddings and norms are not linear layers and keep the compute dtype.
/// </summary>
/// <remarks>
/// <see cref="ModelLoader"/> quantizes each weight as it reads it, so the full-precision model never exists in memory;
/// <see cref="Quantize"/> does the same to a model already in memory, freeing each full-precision weight as it goes.
/// </remarks>
public static class ModelQuantizer
{
    /// <summary>
    /// The paths of the Linear layers <paramref name="options"/> selects, in model order. A LoRA layer's base counts under
    /// the LoRA layer's path; the adapters' own A and B, and <c>modules_to_save</c> copies, are never selected.
    /// </summary>
    public static IReadOnlyList<string> SelectTargets(TransformerModel model, QuantizationOptions options)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(options);
        var skip = options.SkipModules ?? QuantizationOptions.DefaultSkipModules;
        // A tied head shares the embedding's storage: quantizing it would quantize the embedding too.
        var tied = model.TiedParameters.SelectMany(t => new[] { t.Tied, t.Source })
            .Select(k => k.EndsWith(".weight", StringComparison.Ordinal) ? k[..^".weight".Length] : k)
            .ToHashSet(StringComparer.Ordinal);
        var wrappers = model.named_modules().Where(m => m.module is LoraLinear or ModulesToSaveWrapper)
            .ToDictionary(m => m.name, m => m.module, StringComparer.Ordinal);
        return model.LinearLayers()
            .Select(l => SelectablePath(l.Path, wrappers))
            .OfType<string>()
            .Where(p => !tied.Contains(p) && !skip.Any(s => p == s || ModuleSelection.EndsWithSegment(p, s)))
            .ToList();
    }

    /// <summary>
    /// The path a Linear is selected by: its own, or its LoRA layer's when it is that layer's base; null for a LoRA
    /// layer's A and B and for anything inside a <c>modules_to_save</c> wrapper (trained or saved in full precision).
    /// </summary>
    static string? SelectablePath(string path, IReadOnlyDictionary<string, TorchSharp.torch.nn.Module> wrappers)
    {
        for (int dot = path.LastIndexOf('.'); dot > 0; dot = path.LastIndexOf('.', dot - 1))
        {
            if (!wrappers.TryGetValue(path[..dot], out var wrapper)) continue;
            return wrapper is LoraLinear && path[(dot + 1)..] == "base_layer" ? path[..dot] : null;
        }
        return path;
    }

    /// <summary>
    /// Quantizes the selected layers of <paramref name="model"/> in place, freeing each full-precision weight as it
    /// goes. LoRA layers already attached keep their adapters and get a quantized base, exactly as if the model had been
    /// loaded quantized and the same adapters added (A and B are untouched; DoRA's magnitude too, see
    /// <see cref="LoraLinear"/>). Adapters whose initialisation rewrote W (PiSSA, OLoRA, LoRA-GA) are not visible at
    /// this level: <see cref="LoraModel.Quantize"/> refuses them.
    /// </summary>
    /// <exception cref="AlreadyQuantizedException">The model already has quantized layers.</exception>
    /// <exception cref="InvalidOperationException">A LoRA layer has adapters merged into its base weight; nothing was changed.</exception>
    public static QuantizationSummary Quantize(TransformerModel model, QuantizationOptions options)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        ThrowIfQuantized(model);
        var targets = SelectTargets(model, options);
        // Checked for every layer before the first changes, so a refusal leaves the model as it was.
        if (targets.Select(model.GetModule).OfType<LoraLinear>().FirstOrDefault(l => l.IsMerged) is { } merged)
            throw new InvalidOperationException(merged.MergedBaseMessage);
        var workspace = new DequantizationWorkspace();
        var dtype = model.DType;
        QuantizedTensor QuantizeWeight(Linear linear) => QuantizedTensor.Quantize(linear.weight!, options.Type, options.BlockSize, options.DoubleQuant, dtype);
        foreach (var path in targets)
        {
            switch (model.GetModule(path))
            {
                case LoraLinear lora:
                    lora.QuantizeBase(linear => NewLayer(QuantizeWeight(linear), linear, dtype, workspace));
                    break;
                case Linear linear:
                    Install(model, path, QuantizeWeight(linear), dtype, workspace);
                    break;
            }
        }
        LoraPS.Runtime.NativeHeap.Trim();
        return Summarize(model)!;
    }

    /// <summary>Replaces the Linear at <paramref name="path"/> by a quantized layer over <paramref name="weight"/> and frees the Linear.</summary>
    internal static void Install(TransformerModel model, string path, QuantizedTensor weight, ScalarType dtype, DequantizationWorkspace workspace)
    {
        Linear? old = null;
        try
        {
            model.ReplaceModule(path, m =>
            {
                old = (Linear)m;
                return NewLayer(weight, old, dtype, workspace);
            });
        }
        catch
        {
            // Once NewLayer has it, the weight is disposed there on failure.
            if (old is null) weight.Dispose();
            throw;
        }
        old?.Dispose();
    }

    /// <summary>A quantized layer over <paramref name="weight"/> with <paramref name="old"/>'s bias; disposes the weight if that fails.</summary>
    static QuantizedLinear NewLayer(QuantizedTensor weight, Linear old, ScalarType dtype, DequantizationWorkspace workspace)
    {
        try
        {
            return new QuantizedLinear(weight, old.bias is { } b && b.device_type != TorchSharp.DeviceType.META ? b : null, dtype, workspace);
        }
        catch
        {
            weight.Dispose();
            throw;
        }
    }

    /// <exception cref="InvalidOperationException">The model already has quantized layers.</exception>
    public static void ThrowIfQuantized(TransformerModel model)
    {
        if (Summarize(model) is { } summary)
            throw new AlreadyQuantizedException($"This model is already quantized ({summary.Format}, {summary.Layers} layers); it cannot be quantized again. Load the full-precision checkpoint with the quantization you want.");
    }

    /// <summary>
    /// Whether <paramref name="model"/> is already stored exactly as <paramref name="options"/> asks, so that asking again
    /// can be a no-op (a script run twice on the same model object).
    /// </summary>
    /// <returns>True when it is quantized in that format; false when it is not quantized.</returns>
    /// <exception cref="AlreadyQuantizedException">It is quantized in another format.</exception>
    public static bool IsQuantizedAs(TransformerModel model, QuantizationOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (Summarize(model) is not { } summary) return false;
        if (summary.Format == options.Name) return true;
        throw new AlreadyQuantizedException($"This model is already quantized ({summary.Format}, {summary.Layers} layers); it cannot be quantized again as {options.Name}. " +
            $"Import the full-precision model with -Quantize {options.Name}, or leave -Quantize out to use it as it is.");
    }

    /// <summary>The quantized layers of <paramref name="model"/> (inside LoRA layers too), or null when there are none.</summary>
    public static QuantizationSummary? Summarize(TransformerModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        var layers = model.modules().OfType<QuantizedLinear>().ToList();
        if (layers.Count == 0) return null;
        var formats = layers.Select(l => QuantizationOptions.NameOf(l.QuantType, l.IsDoubleQuantized)).Distinct().ToList();
        return new QuantizationSummary(string.Join("+", formats), layers.Count, layers.Sum(l => l.Weight.NumElements),
            layers.Sum(l => l.Weight.StorageBytes), layers[0].ComputeDType);
    }
}

/// <summary>A model or checkpoint that is already quantized was asked to be quantized again.</summary>
public sealed class AlreadyQuantizedException : InvalidOperationException
{
    public AlreadyQuantizedException(string message) : base(message) { }
}
