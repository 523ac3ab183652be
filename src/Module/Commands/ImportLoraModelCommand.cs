using System.Management.Automation;
using LoraPS.Models;
using LoraPS.Module.Completers;
using LoraPS.Quantization;
using LoraPS.Module.Infrastructure;

namespace LoraPS.Module.Commands;

/// <summary>Loads a Hugging Face model folder (config.json, safetensors weights, tokenizer) for LoRA work.</summary>
/// <remarks>
/// <para>
/// Import-LoraModel reads a model folder as saved by Hugging Face transformers: config.json, model.safetensors (or a
/// sharded model.safetensors.index.json) and a tokenizer (tokenizer.json, tokenizer.model or vocab.txt). Supported
/// architectures are llama, mistral, qwen2, gpt2, bert and roberta. It returns a LoraModel object that shows the
/// architecture, parameter count, precision and memory, and that every other LoraPS cmdlet takes.
/// </para>
/// <para>
/// Without -Path it loads the model bundled with LoraPS: stories260K, Karpathy's 260K-parameter Llama trained on
/// TinyStories. Nothing in a model folder is executed, and pickle files (.bin, .pt) are never read: convert them to
/// safetensors first. Use -Verbose to see the load report (renamed, transposed, tied and unexpected weights).
/// A model holds its weights until you pass it to Remove-LoraModel or the session ends.
/// </para>
/// </remarks>
/// <example>Load the bundled model
/// <code>$model = Import-LoraModel</code>
/// <para>Loads stories260K in fp32 and shows its architecture, parameter count and memory.</para>
/// </example>
/// <example>Load a checkpoint in bf16
/// <code>$model = Import-LoraModel -Path ~/models/Qwen2.5-0.5B -Precision BF16</code>
/// <para>bf16 halves the memory and, on CPUs with AVX-512 BF16, roughly doubles matmul speed.</para>
/// </example>
/// <example>Load a model for QLoRA
/// <code>$model = Import-LoraModel -Path ~/models/TinyLlama-1.1B -Quantize nf4-dq
/// $model.QuantizationFormat, $model.BaseBitsPerParameter</code>
/// <para>The linear layers of the transformer blocks are stored in 4-bit NormalFloat with double-quantized block constants
/// (about 4.13 bits per weight, bitsandbytes' format); embeddings, norms and the output head keep the -Precision dtype.
/// LoRA adapters train on top as usual.</para>
/// </example>
/// <example>Load every model under a folder
/// <code>Get-ChildItem ~/models -Directory | Import-LoraModel</code>
/// <para>Folders from the pipeline bind to -LiteralPath through their PSPath.</para>
/// </example>
[Cmdlet(VerbsData.Import, "LoraModel", DefaultParameterSetName = PathSet)]
[OutputType(typeof(LoraModel))]
public sealed class ImportLoraModelCommand : LoraCmdlet
{
    const string PathSet = "Path", LiteralPathSet = "LiteralPath";

    /// <summary>The model folder; wildcards are allowed. Omit it to load the bundled stories260K.</summary>
    [Parameter(Position = 0, ParameterSetName = PathSet, ValueFromPipeline = true)]
    [SupportsWildcards]
    [ValidateNotNullOrEmpty]
    public string[]? Path { get; set; }

    /// <summary>The model folder, taken exactly as written (no wildcards).</summary>
    [Parameter(Mandatory = true, ParameterSetName = LiteralPathSet, ValueFromPipelineByPropertyName = true)]
    [Alias("PSPath", "LP")]
    [ValidateNotNullOrEmpty]
    public string[] LiteralPath { get; set; } = Array.Empty<string>();

    /// <summary>Compute precision of the weights: FP32 (default, the reference) or BF16 (half the memory; fast on CPUs with AVX-512 BF16).</summary>
    [Parameter]
    public Precision Precision { get; set; } = Precision.FP32;

    /// <summary>Which head to build: CausalLM, SequenceClassification or Base. Default: from the config's architectures.</summary>
    [Parameter]
    public ModelHeadKind Head { get; set; }

    /// <summary>Number of labels for a new sequence-classification head on a pretrained body (overrides config.json).</summary>
    [Parameter]
    [ValidateRange(1, int.MaxValue)]
    public int NumLabels { get; set; }

    /// <summary>
    /// Store the linear weights of the transformer blocks quantized, as bitsandbytes does for QLoRA: nf4, nf4-dq, fp4,
    /// fp4-dq (4-bit, blocks of 64; -dq also quantizes the block constants) or int8 (per row). Each weight is quantized as
    /// it is read and dequantized to the -Precision dtype for every matmul; the output head, embeddings and norms keep
    /// that dtype. A quantized model trains LoRA adapters as usual; Merge-LoraAdapter -Path writes it unquantized.
    /// </summary>
    [Parameter]
    [ArgumentCompleter(typeof(QuantizationFormatCompleter))]
    [ValidateNotNullOrEmpty]
    public string? Quantize { get; set; }

    /// <summary>
    /// Seed for the weights the checkpoint does not hold, such as a new -Head SequenceClassification head
    /// (N(0, initializer_range), as transformers initialises it), so that runs from a fresh head are reproducible.
    /// </summary>
    [Parameter]
    public long Seed { get; set; }

    QuantizationOptions? _quantization;

    protected override void BeginProcessing()
    {
        if (Quantize is not null) _quantization = ParseQuantization(Quantize);
    }

    protected override void ProcessRecord()
    {
        bool literal = ParameterSetName == LiteralPathSet;
        var requested = literal ? LiteralPath : Path;
        var folders = requested is null || requested.Length == 0
            ? new[] { RunEngine(_ => LoraModel.BundledModelPath) }
            : requested.SelectMany(p => ResolveExistingFileSystemPaths(p, literal)).ToArray();
        foreach (var folder in folders)
        {
            // A checkpoint that is already quantized fails as AlreadyQuantized (ErrorRecords.Classify).
            var model = RunEngine(_ => LoraModel.Load(folder, Precision,
                MyInvocation.BoundParameters.ContainsKey(nameof(Head)) ? Head : null,
                MyInvocation.BoundParameters.ContainsKey(nameof(NumLabels)) ? NumLabels : null, _quantization,
                MyInvocation.BoundParameters.ContainsKey(nameof(Seed)) ? Seed : null), folder);
            WriteVerbose($"Loaded {model}: {model.LoadReport}");
            WriteObject(model);
        }
    }
}
