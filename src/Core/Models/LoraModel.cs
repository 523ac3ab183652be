using LoraPS.Adapters;
using LoraPS.Quantization;
using LoraPS.Tokenization;
using TorchSharp;
using static TorchSharp.torch;
using IOPath = System.IO.Path;

namespace LoraPS.Models;

/// <summary>Compute precision of a loaded model's weights and activations.</summary>
public enum Precision
{
    /// <summary>32-bit float: the reference precision.</summary>
    FP32,
    /// <summary>bfloat16: about 2.5× faster matmuls on CPUs with AVX-512 BF16; norms, softmax and RoPE stay fp32.</summary>
    BF16,
}

/// <summary>
/// A model as LoraPS holds it: the network, its tokenizer, and where it came from. This is the object
/// <c>Import-LoraModel</c> returns and every other cmdlet takes. It owns the weights: dispose it to free them.
/// </summary>
public sealed class LoraModel : IDisposable
{
    readonly LoadedModel loaded;
    LoraAdapterSet? adapters;
    bool disposed;

    LoraModel(LoadedModel loaded, TextTokenizer tokenizer, Precision precision)
    {
        this.loaded = loaded;
        Tokenizer = tokenizer;
        Precision = precision;
    }

    /// <summary>
    /// Loads a Hugging Face model folder: <c>config.json</c>, safetensors weights (single or sharded) and a tokenizer.
    /// Nothing in the folder is executed and pickle files are never read.
    /// </summary>
    /// <param name="directory">The model folder.</param>
    /// <param name="precision">Compute precision of the weights (and the dtype quantized weights are dequantized to).</param>
    /// <param name="head">Which head to build; default from the config.</param>
    /// <param name="numLabels">Overrides config num_labels.</param>
    /// <param name="quantization">Store the transformer blocks' linear weights quantized (QLoRA); null for none.</param>
    /// <param name="seed">Seed for weights the checkpoint lacks (a new classification head); null uses torch's global generator.</param>
    public static LoraModel Load(string directory, Precision precision = Precision.FP32, ModelHeadKind? head = null, int? numLabels = null,
        QuantizationOptions? quantization = null, long? seed = null)
    {
        var full = IOPath.GetFullPath(directory);
        if (!Directory.Exists(full))
            throw new DirectoryNotFoundException($"The model folder '{full}' does not exist. Give a folder with config.json, model.safetensors and a tokenizer.");
        // The tokenizer first: it is cheap, and a folder without one fails before the weights are read.
        var tokenizer = TextTokenizer.Load(full);
        var loaded = ModelLoader.Load(full, new ModelLoadOptions { DType = ToScalarType(precision), Head = head, NumLabels = numLabels, Quantization = quantization, Seed = seed });
        return new LoraModel(loaded, tokenizer, precision);
    }

    /// <summary>
    /// Wraps a network built in memory (a random model from <see cref="ModelFactory"/>) with a borrowed tokenizer, for
    /// benchmarks and tests that need a model no folder holds. <paramref name="name"/> stands in for the folder.
    /// </summary>
    internal static LoraModel FromNetwork(TransformerModel network, TextTokenizer tokenizer, string name)
    {
        var precision = network.DType == ScalarType.BFloat16 ? Precision.BF16 : Precision.FP32;
        return new LoraModel(new LoadedModel(network, new LoadReport(), name), tokenizer, precision);
    }

    /// <summary>The model folder shipped with LoraPS (stories260K), beside the engine assembly or in the source tree.</summary>
    public static string BundledModelPath
    {
        get
        {
            const string name = "stories260K";
            var here = IOPath.GetDirectoryName(typeof(LoraModel).Assembly.Location) ?? AppContext.BaseDirectory;
            for (var dir = new DirectoryInfo(here); dir is not null; dir = dir.Parent)
            {
                var candidate = IOPath.Combine(dir.FullName, "models", name);
                if (File.Exists(IOPath.Combine(candidate, "config.json"))) return candidate;
            }
            throw new DirectoryNotFoundException($"The bundled model '{name}' was not found beside {here} or above it. Give a model folder with -Path.");
        }
    }

    public TransformerModel Network { get { ThrowIfDisposed(); return loaded.Model; } }
    public TextTokenizer Tokenizer { get; }

    /// <summary>
    /// The LoRA adapters on this model (PEFT's <c>PeftModel</c> view): add, load, save, switch, merge. Created on first
    /// use; until an adapter is added the network is the plain base model.
    /// </summary>
    public LoraAdapterSet Adapters { get { ThrowIfDisposed(); return adapters ??= new LoraAdapterSet(loaded.Model, loaded.Source); } }

    /// <summary>Parameters that currently require gradients (PEFT's <c>print_trainable_parameters</c> "trainable params").</summary>
    public long TrainableParameters => ParameterCount.Of(Network).Trainable;

    /// <summary>All distinct parameters, adapters and module copies included (PEFT's "all params").</summary>
    public long TotalParameters => ParameterCount.Of(Network).Total;

    /// <summary>100 · trainable / total.</summary>
    public double TrainablePercent => ParameterCount.Of(Network).TrainablePercent;
    public ModelConfig Config => loaded.Config;
    public LoadReport LoadReport => loaded.Report;
    public Precision Precision { get; }

    /// <summary>The folder name, e.g. <c>stories260K</c>.</summary>
    public string Name => IOPath.GetFileName(loaded.Source.TrimEnd(IOPath.DirectorySeparatorChar));
    /// <summary>The folder the model was loaded from.</summary>
    public string Path => loaded.Source;
    public string Architecture => Config.ModelType;
    public ModelHeadKind Head => loaded.HeadKind;
    public long Parameters => loaded.ParameterCount;
    /// <summary>Bytes of parameter memory held by the weights.</summary>
    public long MemoryBytes => loaded.ParameterBytes;
    public int Layers => Config.NumHiddenLayers;
    public int HiddenSize => Config.HiddenSize;
    public int VocabSize => Config.VocabSize;
    public int ContextLength => Config.MaxPositionEmbeddings;
    public bool IsDisposed => disposed;

    /// <summary>The quantized base weights (format, layers, bytes), or null when the model is not quantized.</summary>
    public QuantizationSummary? Quantization => ModelQuantizer.Summarize(Network);

    /// <summary><c>nf4</c>, <c>nf4-dq</c>, <c>fp4</c>, <c>fp4-dq</c>, <c>int8</c>, or <c>none</c>.</summary>
    public string QuantizationFormat => Quantization?.Format ?? "none";

    /// <summary>Bits per element of the stored quantized base weights (4.5 for nf4/fp4, ≈4.13 for the -dq variants); null when not quantized.</summary>
    public double? BaseBitsPerParameter => Quantization?.BitsPerParameter;

    /// <summary>Bytes per element of the stored quantized base weights; null when not quantized.</summary>
    public double? BaseBytesPerParameter => Quantization?.BytesPerParameter;

    /// <summary>
    /// Quantizes the base linear weights in place, as <see cref="Load"/> with <c>quantization</c> would have stored them,
    /// freeing each full-precision weight as it goes. Adapters already attached stay as they are on a quantized base
    /// (see <see cref="ModelQuantizer.Quantize"/>); <see cref="MemoryBytes"/> and the quantization properties follow.
    /// Loading quantized is better where possible: this needs the full-precision weights in memory first.
    /// </summary>
    /// <exception cref="AlreadyQuantizedException">The model is already quantized.</exception>
    /// <exception cref="NotSupportedException">An adapter's initialisation rewrote the base weights (PiSSA, OLoRA, LoRA-GA).</exception>
    /// <exception cref="InvalidOperationException">Adapters are merged into the base weights.</exception>
    public QuantizationSummary Quantize(QuantizationOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        ThrowIfDisposed();
        ModelQuantizer.ThrowIfQuantized(Network);
        if (adapters?.BaseRewritingAdapters.FirstOrDefault() is { } rewritten)
            throw new NotSupportedException(
                $"Adapter '{rewritten}' was initialised with {adapters.Get(rewritten).Config.Init.Kind}, which rewrote the base weights to W − s·B₀·A₀; " +
                "LoraPS does not quantize a rewritten base. Quantize first and then add the adapter with the default init " +
                "(Import-LoraModel -Quantize, then Add-LoraAdapter), or train this adapter without quantization.");
        var summary = ModelQuantizer.Quantize(Network, options);
        loaded.RecordQuantization(summary);
        return summary;
    }

    /// <summary>
    /// <see cref="Quantize"/> unless the base is already stored in exactly that format, in which case nothing happens
    /// (a script that runs twice on the same model object gets the same model).
    /// </summary>
    /// <returns>True when it quantized the model, false when it already was in that format.</returns>
    /// <exception cref="AlreadyQuantizedException">The model is quantized in another format.</exception>
    public bool EnsureQuantized(QuantizationOptions options)
    {
        if (ModelQuantizer.IsQuantizedAs(Network, options)) return false;
        Quantize(options);
        return true;
    }

    /// <summary><see cref="MemoryBytes"/> / <see cref="Parameters"/>: bytes per parameter over the whole model.</summary>
    public double BytesPerParameter => Parameters == 0 ? 0 : (double)MemoryBytes / Parameters;

    public static ScalarType ToScalarType(Precision precision) => precision switch
    {
        Precision.FP32 => ScalarType.Float32,
        Precision.BF16 => ScalarType.BFloat16,
        _ => throw new ArgumentOutOfRangeException(nameof(precision), precision, "Use FP32 or BF16."),
    };

    void ThrowIfDisposed()
    {
        if (disposed) throw new ObjectDisposedException(nameof(LoraModel), $"The model '{Name}' was removed (disposed); import it again with Import-LoraModel.");
    }

    public override string ToString()
    {
        var precision = Quantization is { } q ? $"{Precision}, {q.Format}" : Precision.ToString();
        return adapters is { Names.Count: > 0 } set
            ? $"{Name} ({Architecture}, {precision}, adapters {string.Join(", ", set.Names)}; {ParameterCount.Of(Network)})"
            : $"{Name} ({Architecture}, {Parameters:N0} parameters, {precision})";
    }

    public void Dispose()
    {
        if (disposed) return;
        disposed = true;
        loaded.Dispose();
    }
}
