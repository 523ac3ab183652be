using System.Globalization;
using System.Management.Automation;
using LoraPS.Data;
using LoraPS.Models;
using LoraPS.Module.Completers;
using LoraPS.Module.Infrastructure;
using LoraPS.Quantization;
using LoraPS.Training;

namespace LoraPS.Module.Commands;

/// <summary>Fine-tunes a model's LoRA adapter on a dataset (LitGPT finetune_lora) and writes a run folder.</summary>
/// <remarks>
/// <para>
/// Start-LoraFinetune tokenizes the dataset with the model's tokenizer, trains the model's active adapter with AdamW
/// (or SGD), a warmup-then-cosine learning rate, gradient accumulation from -MicroBatchSize to -BatchSize and
/// periodic validation, and writes the run folder: run.json (every setting), metrics.jsonl (one line per step),
/// checkpoints/ and final/ (the trained adapter in PEFT's format). Defaults are LitGPT's: 5 epochs, batch 16, micro
/// batch 1, 100 warmup steps, lr 1e-3, seed 1337.
/// </para>
/// <para>
/// The model needs an adapter first (New-LoraConfig | Add-LoraAdapter). A folder that is not empty is refused unless
/// -Force (which deletes what it holds). Ctrl+C stops after the current step and saves a checkpoint; PowerShell takes no
/// output from a stopped pipeline, so the partial result is the run folder (metrics.jsonl, checkpoints/). Continue with
/// -Resume and the same model, data and data options. A loss or gradient that becomes NaN or infinite stops the run with
/// a TrainingDiverged error; the step is not applied and the last checkpoint stays good. The progress bar shows the
/// step, the loss, tokens per second and the time left.
/// </para>
/// </remarks>
/// <example>Fine-tune the bundled model on the Alpaca subset
/// <code>$model = Import-LoraModel
/// New-LoraConfig -Rank 8 | Add-LoraAdapter -Model $model | Out-Null
/// $data = Import-LoraDataset ./data/alpaca/alpaca_5000_subset.json
/// Start-LoraFinetune -Model $model -Dataset $data -OutputPath ./out/alpaca -MaxSteps 200 -ValidationFraction 0.05</code>
/// <para>Trains 200 steps of 16 examples and prints the steps, final loss, validation loss, speed and adapter folder.</para>
/// </example>
/// <example>Train on pipeline records, mixing in general data against forgetting
/// <code>$model = Import-LoraModel
/// New-LoraConfig -Rank 8 | Add-LoraAdapter -Model $model | Out-Null
/// $general = Import-LoraDataset ./data/alpaca/alpaca_5000_subset.json
/// Import-Csv ./qa.csv | Start-LoraFinetune -Model $model -PromptProperty Question -ResponseProperty Answer -MixDataset $general -MixFraction 0.2 -MaxSteps 100</code>
/// <para>Collects the rows, maps Question/Answer to instruction/response, adds Alpaca examples so they make 20% of the training set, and trains.</para>
/// </example>
/// <example>Train with less memory
/// <code>$model = Import-LoraModel
/// New-LoraConfig -Rank 8 | Add-LoraAdapter -Model $model | Out-Null
/// Start-LoraFinetune -Model $model -DataPath ./data/alpaca/alpaca_5000_subset.json -MaxSteps 100 -MicroBatchSize 4 -GradientCheckpointing</code>
/// <para>Recomputes each layer in the backward instead of holding its activations: the same adapter with a smaller peak memory.</para>
/// </example>
/// <example>Continue an interrupted run
/// <code>$model = Import-LoraModel
/// Start-LoraFinetune -Model $model -DataPath ./data/alpaca/alpaca_5000_subset.json -ValidationFraction 0.05 -Resume ./out/alpaca</code>
/// <para>Loads the adapter and optimizer state from the newest checkpoint and trains the remaining steps.</para>
/// </example>
/// <example>QLoRA: train on a 4-bit base model
/// <code>$m = Import-LoraModel ./models/stories260K -Quantize nf4-dq
/// New-LoraConfig -Rank 8 | Add-LoraAdapter -Model $m | Out-Null
/// Start-LoraFinetune -Model $m -DataPath ./data/alpaca/alpaca_5000_subset.json -MaxSteps 100
///
/// # The same model, quantized by the run instead of by the import:
/// $m = Import-LoraModel ./models/stories260K
/// New-LoraConfig -Rank 8 | Add-LoraAdapter -Model $m | Out-Null
/// Start-LoraFinetune -Model $m -Quantize nf4-dq -DataPath ./data/alpaca/alpaca_5000_subset.json -MaxSteps 100
/// $m.QuantizationFormat   # nf4-dq: $m itself was quantized</code>
/// <para>Both train the adapter on NF4 base weights with double-quantized block constants (about 4.13 bits per weight).
/// Importing with -Quantize is the better path for a large model: each weight is quantized as it is read, so the
/// full-precision model never sits in memory. -Quantize on Start-LoraFinetune quantizes the model object you pass, in
/// place, before the first step; it stays quantized after the run.</para>
/// </example>
[Cmdlet(VerbsLifecycle.Start, "LoraFinetune", DefaultParameterSetName = DatasetSet, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Low)]
[OutputType(typeof(TrainingResult))]
public sealed class StartLoraFinetuneCommand : DatasetCmdlet
{
    const string DatasetSet = "Dataset", DataPathSet = "DataPath", InputObjectSet = "InputObject";

    readonly List<IReadOnlyDictionary<string, object?>> _records = [];
    bool _trained;

    /// <summary>The model from Import-LoraModel, with an adapter from Add-LoraAdapter (or, with -Resume, without it).</summary>
    [Parameter(Mandatory = true, Position = 0)]
    [ValidateNotNull]
    public LoraModel Model { get; set; } = null!;

    /// <summary>The training data from Import-LoraDataset.</summary>
    [Parameter(Mandatory = true, Position = 1, ParameterSetName = DatasetSet, ValueFromPipeline = true)]
    [ValidateNotNull]
    public Dataset Dataset { get; set; } = null!;

    /// <summary>A dataset file to read as Import-LoraDataset would (format and properties detected).</summary>
    [Parameter(Mandatory = true, ParameterSetName = DataPathSet)]
    [ValidateNotNullOrEmpty]
    public string DataPath { get; set; } = null!;

    /// <summary>One training record from the pipeline (an Import-Csv row, [pscustomobject] or hashtable); all are collected and trained on at the end.</summary>
    [Parameter(Mandatory = true, ParameterSetName = InputObjectSet, ValueFromPipeline = true)]
    [ValidateNotNull]
    public PSObject InputObject { get; set; } = null!;

    /// <summary>A separate validation dataset; not together with -ValidationFraction or -ValidationPath.</summary>
    [Parameter]
    public Dataset? ValidationDataset { get; set; }

    /// <summary>A validation dataset file, read with the same -Format and -*Property mapping (and the training labels).</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? ValidationPath { get; set; }

    /// <summary>A second dataset mixed into the training set (e.g. general instructions replayed against catastrophic forgetting).</summary>
    [Parameter]
    public Dataset? MixDataset { get; set; }

    /// <summary>The share of the training set drawn from -MixDataset.</summary>
    /// <value>Default: 0.2.</value>
    [Parameter]
    [ValidateRange(0.001, 0.999)]
    public double MixFraction { get; set; } = 0.2;

    /// <summary>The share of the training data held out for validation (split with seed 42); 0 for none.</summary>
    /// <value>Default: 0.</value>
    [Parameter]
    [ValidateRange(0.0, 0.99)]
    public double ValidationFraction { get; set; }

    /// <summary>The run folder; it must be empty or not exist (see -Force). Default: out/finetune/lora-TIMESTAMP.</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? OutputPath { get; set; }

    /// <summary>Passes over the training data, when -MaxSteps is not given.</summary>
    /// <value>Default: 5.</value>
    [Parameter]
    [ValidateRange(1, int.MaxValue)]
    public int Epochs { get; set; } = 5;

    /// <summary>Optimizer steps to run; overrides -Epochs.</summary>
    [Parameter]
    [ValidateRange(1L, long.MaxValue)]
    public long MaxSteps { get; set; }

    /// <summary>Stop after the step during which this much time has passed (with a checkpoint and the final adapter).</summary>
    [Parameter]
    public TimeSpan MaxTime { get; set; }

    /// <summary>Examples per optimizer step (the global batch); a multiple of -MicroBatchSize.</summary>
    /// <value>Default: 16.</value>
    [Parameter]
    [ValidateRange(1, int.MaxValue)]
    public int BatchSize { get; set; } = 16;

    /// <summary>Examples per forward/backward pass; the gradients of BatchSize/MicroBatchSize passes are accumulated.</summary>
    /// <value>Default: 1.</value>
    [Parameter]
    [ValidateRange(1, int.MaxValue)]
    public int MicroBatchSize { get; set; } = 1;

    /// <summary>The peak learning rate.</summary>
    /// <value>Default: 0.001.</value>
    [Parameter]
    [ValidateRange(0.0, double.MaxValue)]
    public double LearningRate { get; set; } = 1e-3;

    /// <summary>Steps of linear warmup from 0 before the cosine decay (cut to the run's length).</summary>
    /// <value>Default: 100.</value>
    [Parameter]
    [ValidateRange(0, int.MaxValue)]
    public int WarmupSteps { get; set; } = 100;

    /// <summary>The learning-rate schedule after warmup: CosineWithWarmup (LitGPT's), Linear or Constant.</summary>
    /// <value>Default: CosineWithWarmup.</value>
    [Parameter]
    public ScheduleKind Schedule { get; set; } = ScheduleKind.CosineWithWarmup;

    /// <summary>The optimizer: AdamW (torch.optim.AdamW), AdamW8bit (bitsandbytes' 8-bit AdamW: a quarter of the state memory) or SGD.</summary>
    /// <value>Default: AdamW.</value>
    [Parameter]
    public OptimizerKind Optimizer { get; set; } = OptimizerKind.AdamW;

    /// <summary>Weight decay (default: 0.01 for AdamW, 0 for SGD, as in torch).</summary>
    [Parameter]
    [ValidateRange(0.0, double.MaxValue)]
    public double WeightDecay { get; set; }

    /// <summary>AdamW's beta1 and beta2 (the decay of the first and second moments).</summary>
    /// <value>Default: 0.9, 0.999.</value>
    [Parameter]
    [ValidateCount(2, 2)]
    [ValidateRange(0.0, 0.999999)]
    public double[]? Betas { get; set; }

    /// <summary>SGD's momentum factor; 0 is plain SGD.</summary>
    /// <value>Default: 0.</value>
    [Parameter]
    [ValidateRange(0.0, double.MaxValue)]
    public double Momentum { get; set; }

    /// <summary>Clip the global gradient norm to this value; without it the norm is only measured.</summary>
    [Parameter]
    [ValidateRange(0.0, double.MaxValue)]
    public double MaxGradNorm { get; set; }

    /// <summary>Compute the loss only on the response tokens, not on the prompt.</summary>
    [Parameter]
    public SwitchParameter MaskPrompt { get; set; }

    /// <summary>Cut longer examples to this many tokens; by default every token is kept.</summary>
    [Parameter]
    [ValidateRange(2, int.MaxValue)]
    public int MaxSeqLength { get; set; }

    /// <summary>The instruction template: alpaca (LitGPT's default) or plain.</summary>
    /// <value>Default: alpaca.</value>
    [Parameter]
    [ValidateSet("alpaca", "plain")]
    public string PromptStyle { get; set; } = "alpaca";

    /// <summary>Batch examples of similar length together (shuffled buckets), so little compute is spent on padding.</summary>
    [Parameter]
    public SwitchParameter GroupByLength { get; set; }

    /// <summary>Also validate before the first step, so the result shows the loss (and accuracy) before and after.</summary>
    [Parameter]
    public SwitchParameter InitialValidation { get; set; }

    /// <summary>
    /// Recompute each layer's activations in the backward instead of keeping them from the forward (gradient
    /// checkpointing, as in the QLoRA recipe): the same adapter, much less memory, about a third more compute.
    /// </summary>
    [Parameter]
    public SwitchParameter GradientCheckpointing { get; set; }

    /// <summary>Seed of the batch order and the dropout masks.</summary>
    /// <value>Default: 1337.</value>
    [Parameter]
    public long Seed { get; set; } = 1337;

    /// <summary>Validate every this many steps; 0 only at the end.</summary>
    /// <value>Default: 100.</value>
    [Parameter]
    [ValidateRange(0, int.MaxValue)]
    public int EvalInterval { get; set; } = 100;

    /// <summary>Write a checkpoint every this many steps; 0 only when stopped early.</summary>
    /// <value>Default: 1000.</value>
    [Parameter]
    [ValidateRange(0, int.MaxValue)]
    public int SaveInterval { get; set; } = 1000;

    /// <summary>Continue the run in this folder from its newest checkpoint, with the settings in its run.json.</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? Resume { get; set; }

    /// <summary>
    /// Quantize the model's frozen base linear weights before training (QLoRA), as Import-LoraModel -Quantize does: nf4,
    /// nf4-dq, fp4, fp4-dq or int8. The model object given to -Model is changed in place and stays quantized after the
    /// run; adapters already added are kept (PiSSA/OLoRA/LoRA-GA adapters, which rewrote the base, and merged adapters are
    /// refused). A model already quantized in this format is used as it is; one quantized in another format is refused
    /// (AlreadyQuantized). Import-LoraModel -Quantize is better where you can: it never holds the full-precision weights.
    /// </summary>
    [Parameter]
    [ArgumentCompleter(typeof(QuantizationFormatCompleter))]
    [ValidateNotNullOrEmpty]
    public string? Quantize { get; set; }

    /// <summary>Use -OutputPath even when it is not empty, deleting what it holds.</summary>
    [Parameter]
    public SwitchParameter Force { get; set; }

    QuantizationOptions? _quantization;

    bool Bound(string name) => MyInvocation.BoundParameters.ContainsKey(name);

    protected override void BeginProcessing()
    {
        int validationSources = (ValidationDataset is null ? 0 : 1) + (ValidationPath is null ? 0 : 1) + (ValidationFraction > 0 ? 1 : 0);
        if (validationSources > 1)
            ThrowTerminating(ErrorIds.InvalidArgument, ErrorCategory.InvalidArgument,
                "Give one of -ValidationDataset, -ValidationPath or -ValidationFraction, not several.");
        if (Momentum > 0 && Optimizer != OptimizerKind.Sgd)
            ThrowTerminating(ErrorIds.InvalidArgument, ErrorCategory.InvalidArgument, "-Momentum is for -Optimizer Sgd; AdamW's moments are set with -Betas.");
        if (Quantize is not null)
        {
            _quantization = ParseQuantization(Quantize);
            // Another format fails here, before any data is read; the same format is a no-op later.
            RunEngine(_ => ModelQuantizer.IsQuantizedAs(Model.Network, _quantization), Model);
        }
        if (Resume is null && Model.Adapters.Names.Count == 0)
            ThrowTerminating(ErrorIds.InvalidOperation, ErrorCategory.InvalidOperation,
                $"The model {Model} has no LoRA adapter to train. Add one first: New-LoraConfig | Add-LoraAdapter -Model $model " +
                "(or pass -Resume to continue a run, which loads its adapter).", Model);
    }

    protected override void ProcessRecord()
    {
        if (ParameterSetName == InputObjectSet)
        {
            if (InputObject.BaseObject is Dataset dataset) Train(dataset);
            else _records.Add(PipelineRecords.ToDictionary(InputObject));
            return;
        }
        if (ParameterSetName == DataPathSet)
        {
            string file = ResolveSingleExistingFileSystemPath(DataPath, literal: false);
            Train(RunEngine(token => DatasetReader.ReadFile(file, ReadOptions(), token), file));
        }
        else Train(Dataset);
    }

    protected override void EndProcessing()
    {
        if (ParameterSetName != InputObjectSet || _trained) return;
        if (_records.Count == 0)
            ThrowTerminating(ErrorIds.InvalidData, ErrorCategory.InvalidData, "No records came from the pipeline; pipe objects with the example's properties.");
        Train(RunEngine(token => DatasetReader.FromDictionaries(_records, ReadOptions(), cancellationToken: token)));
    }

    void Train(Dataset train)
    {
        _trained = true;
        string runFolder = Resume is not null
            ? ResolveSingleExistingFileSystemPath(Resume, literal: true)
            : GetUnresolvedFileSystemPath(OutputPath ?? System.IO.Path.Combine("out", "finetune",
                "lora-" + DateTime.Now.ToString("yyyyMMdd-HHmmss", CultureInfo.InvariantCulture)));
        bool clear = false;
        if (Resume is null && Directory.Exists(runFolder) && Directory.EnumerateFileSystemEntries(runFolder).Any())
        {
            if (!Force)
                ThrowTerminating(ErrorIds.FolderNotEmpty, ErrorCategory.ResourceExists,
                    $"'{runFolder}' is not empty. Choose another -OutputPath, pass -Resume '{runFolder}' to continue a run there, or -Force to delete what it holds.", runFolder);
            clear = true;
        }

        string action = Resume is not null ? "Resume LoRA fine-tuning"
            : clear ? "Delete the folder's contents and write a LoRA fine-tuning run" : "Write a LoRA fine-tuning run";
        if (_quantization is not null && Model.Quantization is null) action += $", after quantizing the model's base weights to {_quantization} in place";
        if (!ShouldProcess(runFolder, action)) return;
        if (_quantization is not null) QuantizeModel(_quantization);

        var validation = ValidationDataset;
        if (ValidationPath is not null)
        {
            string file = ResolveSingleExistingFileSystemPath(ValidationPath, literal: false);
            validation = RunEngine(token => DatasetReader.ReadFile(file, ReadOptions(train.Labels), token), file);
        }
        var preparation = new DataPreparationOptions
        {
            ValidationFraction = ValidationFraction,
            MixFraction = MixFraction,
            Tokenization = new TokenizationOptions
            {
                PromptStyle = PromptStyles.FromName(PromptStyle),
                MaskPrompt = MaskPrompt,
                MaxSeqLength = Bound(nameof(MaxSeqLength)) ? MaxSeqLength : null,
            },
        };
        var data = RunEngine(token => DataPreparation.Prepare(train, Model.Tokenizer, preparation, validation, MixDataset, token), train);
        WriteVerbose($"Prepared {data.Train.Count} training ({data.MixedInCount} mixed in) and {data.ValidationExamples.Count} validation examples " +
            $"({data.Train.TotalTokens:N0} tokens, longest {data.Train.MaxLength}, {data.Train.TruncatedCount} truncated).");

        if (clear)
            RunEngine(_ => { foreach (var entry in new DirectoryInfo(runFolder).EnumerateFileSystemInfos()) DeleteEntry(entry); }, runFolder);

        TrainingResult result;
        using (var progress = CreateProgress<TrainingProgress>(Resume is null ? $"Fine-tuning {Model}" : $"Resuming {runFolder}", Describe))
        {
            result = Resume is not null
                ? RunEngine(token => LoraTrainer.Resume(runFolder, Model, data, progress, token), runFolder)
                : RunEngine(token => LoraTrainer.Run(Model, data, Options(runFolder), progress, token), runFolder);
        }
        WriteVerbose($"{result.StopReason} after {result.Steps} of {result.MaxSteps} steps; adapter in {result.AdapterPath}.");
        WriteObject(result);
        // The engine stopped after a step and saved a checkpoint instead of throwing; the pipeline still has to stop.
        if (result.StopReason == StopReason.Cancelled) throw new PipelineStoppedException();
    }

    /// <summary>-Quantize: the model object the user holds is changed, so say so.</summary>
    void QuantizeModel(QuantizationOptions quantization)
    {
        if (!RunEngine(_ => Model.EnsureQuantized(quantization), Model))
        {
            WriteVerbose($"The model is already quantized as {quantization}; -Quantize has nothing to do.");
            return;
        }
        var summary = Model.Quantization!;
        WriteVerbose(string.Create(CultureInfo.InvariantCulture,
            $"Quantized the model's base weights in place to {summary.Format} ({summary.Layers} layers, {summary.BitsPerParameter:F2} bits per weight); ") +
            "the model object stays quantized after this run. Import-LoraModel -Quantize gives the same model without ever holding the full-precision weights.");
    }

    TrainingOptions Options(string runFolder) => new()
    {
        OutputDirectory = runFolder,
        Epochs = Epochs,
        MaxSteps = Bound(nameof(MaxSteps)) ? MaxSteps : null,
        MaxTime = Bound(nameof(MaxTime)) ? MaxTime : null,
        GlobalBatchSize = BatchSize,
        MicroBatchSize = MicroBatchSize,
        Optimizer = new OptimizerOptions
        {
            Kind = Optimizer,
            LearningRate = LearningRate,
            WeightDecay = Bound(nameof(WeightDecay)) ? WeightDecay : null,
            Momentum = Momentum,
        } is var optimizer && Betas is not null ? optimizer with { Beta1 = Betas[0], Beta2 = Betas[1] } : optimizer,
        Schedule = new LearningRateSchedule { Kind = Schedule, WarmupSteps = WarmupSteps },
        BatchOrdering = GroupByLength ? BatchOrdering.LengthGrouped : BatchOrdering.Random,
        InitialValidation = InitialValidation,
        MaxGradNorm = Bound(nameof(MaxGradNorm)) ? MaxGradNorm : null,
        Seed = Seed,
        GradientCheckpointing = GradientCheckpointing,
        EvalInterval = EvalInterval,
        SaveInterval = SaveInterval,
    };

    static ProgressUpdate Describe(TrainingProgress p) => new(
        string.Create(CultureInfo.InvariantCulture, $"Step {p.Step}/{p.MaxSteps}, loss {p.Loss:F4}, {p.TokensPerSecond:N0} tokens/s") +
            (p.Validation is { } v ? string.Create(CultureInfo.InvariantCulture, $", val loss {v.Loss:F4}") : ""),
        (int)Math.Clamp(p.PercentComplete, 0, 100),
        SecondsRemaining: p.Remaining is { } r ? (int)Math.Min(int.MaxValue, r.TotalSeconds) : -1);

    static void DeleteEntry(FileSystemInfo entry)
    {
        if (entry is DirectoryInfo directory) directory.Delete(recursive: true);
        else entry.Delete();
    }
}
