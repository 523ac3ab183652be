using System.Globalization;
using System.Management.Automation;
using LoraPS.Adapters;
using LoraPS.Data;
using LoraPS.Models;
using LoraPS.Module.Infrastructure;
using LoraPS.Training;

namespace LoraPS.Module.Commands;

/// <summary>Adds a LoRA adapter initialised by LoRA-GA: A and B from the singular vectors of the estimated full-weight gradient.</summary>
/// <remarks>
/// <para>
/// Initialize-LoraGA (Wang, Yu and Li, NeurIPS 2024) runs forward and backward passes of the training loss on
/// -Batches batches of -BatchSize examples of the dataset with only the target weights requiring gradients, averages
/// each target's gradient, takes its SVD and sets A to the top r right singular vectors and B to the left singular
/// vectors r..2r-1 (-Direction ArB2r), scaled for a stable output (-Scale Stable, gamma 16). It then rewrites each base
/// weight to W - s*B*A, so the model's output is unchanged; the first training step follows full fine-tuning's
/// direction, which the paper reports converges 2-4x faster than plain LoRA. Use -Config from New-LoraConfig; the
/// paper pairs it with rsLoRA (New-LoraConfig -UseRsLora). -Variant Peft follows Hugging Face PEFT's lora_ga instead
/// (B carries the singular values; the stable scale goes on B only).
/// </para>
/// <para>
/// Because the base weights change, Save-LoraAdapter writes this adapter converted for the original model (rank 2r,
/// alpha doubled), as PEFT's path_initial_model_for_weight_conversion does; Save-LoraAdapter -NoConversion writes it
/// as it is. -GradientCachePath saves the gradients the first time and reuses them when the file exists. Quantized
/// layers are refused: the gradient needs full-precision weights. Ctrl+C stops between batches and leaves the model
/// unchanged.
/// </para>
/// </remarks>
/// <example>LoRA-GA on the bundled model, then fine-tune
/// <code>$model = Import-LoraModel
/// $data = Import-LoraDataset ./data/arithmetic/two_digit_addition.jsonl
/// Initialize-LoraGA -Model $model -Config (New-LoraConfig -Rank 8 -Alpha 16 -UseRsLora -TargetModules all-linear) -Dataset $data
/// Start-LoraFinetune -Model $model -Dataset $data -MaxSteps 100 -OutputPath ./out/loraga</code>
/// <para>Estimates the gradient on 64 batches of 2, adds the adapter default to every linear layer, prints the layers, batches, time and peak memory, then trains it.</para>
/// </example>
/// <example>Reuse the gradient to try another direction
/// <code>Initialize-LoraGA -Model $model -Config $config -Dataset $data -GradientCachePath ./out/grads.safetensors -Direction A2rBr -Name a2rbr</code>
/// <para>The first call writes ./out/grads.safetensors; later calls with the same path skip the forward and backward passes.</para>
/// </example>
[Cmdlet(VerbsData.Initialize, "LoraGA", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Low)]
[OutputType(typeof(LoraGaResult))]
public sealed class InitializeLoraGACommand : LoraCmdlet
{
    /// <summary>The model from Import-LoraModel (full precision, not quantized).</summary>
    [Parameter(Mandatory = true, Position = 0)]
    [ValidateNotNull]
    public LoraModel Model { get; set; } = null!;

    /// <summary>The LoRA settings from New-LoraConfig: targets, rank, alpha, rsLoRA.</summary>
    [Parameter(Mandatory = true, Position = 1)]
    [ValidateNotNull]
    public LoraConfig Config { get; set; } = null!;

    /// <summary>The training data from Import-LoraDataset; not needed when -GradientCachePath names an existing file.</summary>
    [Parameter(Position = 2, ValueFromPipeline = true)]
    public Dataset? Dataset { get; set; }

    /// <summary>The adapter name; no dots.</summary>
    /// <value>Default: default.</value>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string Name { get; set; } = "default";

    /// <summary>Batches whose gradients are averaged.</summary>
    /// <value>Default: 64.</value>
    [Parameter]
    [ValidateRange(1, int.MaxValue)]
    public int Batches { get; set; } = 64;

    /// <summary>Examples per batch.</summary>
    /// <value>Default: 2.</value>
    [Parameter]
    [ValidateRange(1, int.MaxValue)]
    public int BatchSize { get; set; } = 2;

    /// <summary>Which singular vectors go into A and B: ArB2r, A2rBr, ArBr or Random.</summary>
    /// <value>Default: ArB2r.</value>
    [Parameter]
    public LoraGaDirection Direction { get; set; } = LoraGaDirection.ArB2r;

    /// <summary>How A and B are scaled: Stable, GD, Unit or WeightS.</summary>
    /// <value>Default: Stable.</value>
    [Parameter]
    public LoraGaScale Scale { get; set; } = LoraGaScale.Stable;

    /// <summary>Gamma of the stable scale (A and B times d_out^(1/4)/sqrt(gamma)).</summary>
    /// <value>Default: 16.</value>
    [Parameter]
    [ValidateRange(1e-6, double.MaxValue)]
    public double StableGamma { get; set; } = 16;

    /// <summary>Official (the paper's code) or Peft (Hugging Face PEFT's lora_ga).</summary>
    /// <value>Default: Official.</value>
    [Parameter]
    public LoraGaVariant Variant { get; set; } = LoraGaVariant.Official;

    /// <summary>Use an exact SVD (float64) instead of the randomized one the official code uses (4 subspace iterations).</summary>
    [Parameter]
    public SwitchParameter ExactSvd { get; set; }

    /// <summary>A safetensors file: read the gradients from it when it exists, otherwise write them to it.</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? GradientCachePath { get; set; }

    /// <summary>Seed of the batch order, the randomized SVD and the Random direction.</summary>
    /// <value>Default: 42.</value>
    [Parameter]
    public long Seed { get; set; } = 42;

    /// <summary>Compute the loss only on the response tokens, as Start-LoraFinetune -MaskPrompt.</summary>
    [Parameter]
    public SwitchParameter MaskPrompt { get; set; }

    /// <summary>Cut longer examples to this many tokens (the official code uses 1024); by default every token is kept.</summary>
    [Parameter]
    [ValidateRange(2, int.MaxValue)]
    public int MaxSeqLength { get; set; }

    /// <summary>The instruction template: alpaca or plain, as Start-LoraFinetune.</summary>
    /// <value>Default: alpaca.</value>
    [Parameter]
    [ValidateSet("alpaca", "plain")]
    public string PromptStyle { get; set; } = "alpaca";

    protected override void ProcessRecord()
    {
        string? cache = GradientCachePath is null ? null : GetUnresolvedFileSystemPath(GradientCachePath);
        bool cached = cache is not null && File.Exists(cache);
        if (Dataset is null && !cached)
            ThrowTerminating(ErrorIds.InvalidArgument, ErrorCategory.InvalidArgument,
                "Give -Dataset (Import-LoraDataset) to estimate the gradients from" + (cache is null ? ", or -GradientCachePath with a saved gradient file." : $"; the gradient cache '{cache}' does not exist yet."));
        if (!ShouldProcess(Model.ToString(), $"Add LoRA-GA adapter '{Name}' and rewrite the targeted base weights" + (cache is not null && !cached ? $"; write gradients to '{cache}'" : ""))) return;

        PreparedData? data = null;
        if (!cached)
        {
            var preparation = new DataPreparationOptions
            {
                Tokenization = new TokenizationOptions
                {
                    PromptStyle = PromptStyles.FromName(PromptStyle),
                    MaskPrompt = MaskPrompt,
                    MaxSeqLength = MyInvocation.BoundParameters.ContainsKey(nameof(MaxSeqLength)) ? MaxSeqLength : null,
                },
            };
            data = RunEngine(token => DataPreparation.Prepare(Dataset!, Model.Tokenizer, preparation, cancellationToken: token), Dataset);
        }
        var options = new LoraGaOptions
        {
            Batches = Batches,
            BatchSize = BatchSize,
            Direction = Direction,
            Scale = Scale,
            StableGamma = StableGamma,
            Variant = Variant,
            SvdIterations = ExactSvd ? null : 4,
            Seed = Seed,
        };
        LoraGaResult result;
        using (var progress = CreateProgress<LoraGaProgress>($"LoRA-GA on {Model}", Describe))
        {
            result = RunEngine(token => LoraGaInitializer.Initialize(Model.Adapters, Name, Config, data, options, cache, progress, token), Model);
        }
        WriteVerbose($"Added LoRA-GA adapter '{Name}' to {result.Layers} layers from {result.Batches} batches (mean loss {result.MeanLoss:F4}).");
        WriteObject(result);
    }

    static ProgressUpdate Describe(LoraGaProgress p) => p.Phase == LoraGaPhase.Gradients
        ? new(string.Create(CultureInfo.InvariantCulture, $"Gradient batch {p.Done}/{p.Total}, loss {p.Loss:F4}"), (int)Math.Clamp(p.PercentComplete, 0, 100))
        : new(string.Create(CultureInfo.InvariantCulture, $"SVD of layer {p.Done}/{p.Total}"), (int)Math.Clamp(p.PercentComplete, 0, 100), p.Layer);
}
