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
    /// <summary>The paths of the Linear layers <paramref name="options"/> selects, in model order.</summary>
    public static IReadOnlyList<string> SelectTargets(TransformerModel model, QuantizationOptions options)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(options);
        var skip = options.SkipModules ?? QuantizationOptions.DefaultSkipModules;
        // A tied head shares the embedding's storage: quantizing it would quantize the embedding too.
        var tied = model.TiedParameters.SelectMany(t => new[] { t.Tied, t.Source })
            .Select(k => k.EndsWith(".weight", StringComparison.Ordinal) ? k[..^".weight".Length] : k)
            .ToHashSet(StringComparer.Ordinal);
        return model.LinearLayers()
            .Where(l => !tied.Contains(l.Path) && !skip.Any(s => l.Path == s || ModuleSelection.EndsWithSegment(l.Path, s)))
            .Select(l => l.Path)
            .ToList();
    }

    /// <summary>
    /// Quantizes the selected layers of <paramref name="model"/> in place. Must run before adapters are added.
    /// </summary>
    /// <exception cref="InvalidOperationException">The model is already quantized, or it holds LoRA layers.</exception>
    public static QuantizationSummary Quantize(TransformerModel model, QuantizationOptions options)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        ThrowIfQuantized(model);
        if (model.modules().Any(m => m is LoraLinear or ModulesToSaveWrapper))
            throw new InvalidOperationException("This model already holds LoRA adapters; quantize the base model before adding adapters (Import-LoraModel -Quantize).");
        var workspace = new DequantizationWorkspace();
        var dtype = model.DType;
        foreach (var path in SelectTargets(model, options))
        {
            var linear = (Linear)model.GetModule(path);
            var quantized = QuantizedTensor.Quantize(linear.weight!, options.Type, options.BlockSize, options.DoubleQuant, dtype);
            Install(model, path, quantized, dtype, workspace);
        }
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
                return new QuantizedLinear(weight, old.bias is { } b && b.device_type != TorchSharp.DeviceType.META ? b : null, dtype, workspace);
            });
        }
        catch
        {
            weight.Dispose();
            throw;
        }
        old?.Dispose();
    }

    /// <exception cref="InvalidOperationException">The model already has quantized layers.</exception>
    public static void ThrowIfQuantized(TransformerModel model)
    {
        if (Summarize(model) is { } summary)
            throw new AlreadyQuantizedException($"This model is already quantized ({summary.Format}, {summary.Layers} layers); it cannot be quantized again. Load the full-precision checkpoint with the quantization you want.");
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
