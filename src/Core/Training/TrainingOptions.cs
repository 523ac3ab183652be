using System.Text.Json.Serialization;
using LoraPS.Data;

namespace LoraPS.Training;

/// <summary>
/// Everything a fine-tuning run is told, with LitGPT's <c>finetune_lora</c> defaults (epochs 5, global batch 16, micro
/// batch 1, warmup 100, seed 1337, torch's AdamW defaults). Saved whole in the run folder's <c>run.json</c>, from which
/// <see cref="LoraTrainer.Resume"/> reads it back.
/// </summary>
public sealed record TrainingOptions
{
    /// <summary>The run folder: run.json, metrics.jsonl, checkpoints/ and final/ go here. It must not hold a run yet.</summary>
    public required string OutputDirectory { get; init; }

    /// <summary>Passes over the training data when <see cref="MaxSteps"/> is not set.</summary>
    public int Epochs { get; init; } = 5;

    /// <summary>Optimizer steps to run; null derives them from <see cref="Epochs"/> (epochs · batches per epoch / accumulation).</summary>
    public long? MaxSteps { get; init; }

    /// <summary>Stop (with a checkpoint and the final adapter) after the step during which this much time has passed.</summary>
    public TimeSpan? MaxTime { get; init; }

    /// <summary>Examples per optimizer step; a multiple of <see cref="MicroBatchSize"/>.</summary>
    public int GlobalBatchSize { get; init; } = 16;

    /// <summary>Examples per forward/backward pass; gradients of GlobalBatchSize/MicroBatchSize passes are accumulated.</summary>
    public int MicroBatchSize { get; init; } = 1;

    public OptimizerOptions Optimizer { get; init; } = new();

    public LearningRateSchedule Schedule { get; init; } = new();

    /// <summary>Clip the global gradient norm to this (null: measure it only, LitGPT's <c>max_norm=None</c>).</summary>
    public double? MaxGradNorm { get; init; }

    /// <summary>Seed of the batch order and of the dropout masks.</summary>
    public long Seed { get; init; } = 1337;

    /// <summary>Random batches (LitGPT's shuffled loader) or length-grouped ones (less padding).</summary>
    public BatchOrdering BatchOrdering { get; init; } = BatchOrdering.Random;

    /// <summary>Round padded batch lengths up to a multiple of this (e.g. 8 on GPUs); null pads to the longest example.</summary>
    public int? PadToMultipleOf { get; init; }

    /// <summary>Validate every this many steps (LitGPT's eval interval 100); 0 never during the run.</summary>
    public int EvalInterval { get; init; } = 100;

    /// <summary>At most this many validation batches per evaluation (LitGPT's eval max_iters 100); null for all.</summary>
    public int? EvalMaxBatches { get; init; } = 100;

    /// <summary>Examples per validation batch; null uses <see cref="MicroBatchSize"/>.</summary>
    public int? EvalBatchSize { get; init; }

    /// <summary>Also validate after the last step.</summary>
    public bool EvaluateAtEnd { get; init; } = true;

    /// <summary>Validate once before the first step (LitGPT's <c>eval.initial_validation</c>), the "before" of a before/after.</summary>
    public bool InitialValidation { get; init; }

    /// <summary>Write a checkpoint every this many steps (LitGPT's save interval 1000); 0 only when stopped early.</summary>
    public int SaveInterval { get; init; } = 1000;

    /// <summary>Keep only the newest this many checkpoints; null keeps all.</summary>
    public int? KeepCheckpoints { get; init; }

    /// <summary>
    /// Recompute each layer in the backward instead of keeping its activations (<see cref="Models.TransformerModel.GradientCheckpointing"/>,
    /// on in the QLoRA recipe): the same adapter for much less memory and about a third more compute. True turns it on
    /// for the run; false leaves the model's own setting.
    /// </summary>
    public bool GradientCheckpointing { get; init; }

    /// <summary>The adapter to train; null takes the model's only active adapter.</summary>
    public string? AdapterName { get; init; }

    /// <summary>Micro-batches whose gradients make one optimizer step.</summary>
    [JsonIgnore]
    public int AccumulationSteps => GlobalBatchSize / MicroBatchSize;

    /// <summary>Throws for settings no run can use.</summary>
    public void Validate()
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(OutputDirectory, nameof(OutputDirectory));
        static void AtLeast(long value, long min, string name)
        {
            if (value < min) throw new ArgumentOutOfRangeException(name, value, $"{name} must be at least {min}.");
        }
        AtLeast(MicroBatchSize, 1, nameof(MicroBatchSize));
        AtLeast(GlobalBatchSize, 1, nameof(GlobalBatchSize));
        if (GlobalBatchSize % MicroBatchSize != 0)
            throw new ArgumentException($"GlobalBatchSize {GlobalBatchSize} is not a multiple of MicroBatchSize {MicroBatchSize}; gradients are accumulated over whole micro-batches.", nameof(GlobalBatchSize));
        if (MaxSteps is { } steps) AtLeast(steps, 1, nameof(MaxSteps)); else AtLeast(Epochs, 1, nameof(Epochs));
        if (MaxTime is { } time && time <= TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(MaxTime), time, "MaxTime must be positive.");
        if (MaxGradNorm is { } norm && !(norm > 0)) throw new ArgumentOutOfRangeException(nameof(MaxGradNorm), norm, "MaxGradNorm must be > 0.");
        AtLeast(EvalInterval, 0, nameof(EvalInterval));
        AtLeast(SaveInterval, 0, nameof(SaveInterval));
        if (EvalMaxBatches is { } eb) AtLeast(eb, 1, nameof(EvalMaxBatches));
        if (EvalBatchSize is { } es) AtLeast(es, 1, nameof(EvalBatchSize));
        if (KeepCheckpoints is { } keep) AtLeast(keep, 1, nameof(KeepCheckpoints));
        if (PadToMultipleOf is { } pad) AtLeast(pad, 1, nameof(PadToMultipleOf));
        AtLeast(Schedule.WarmupSteps, 0, "Schedule.WarmupSteps");
        Optimizer.Validate();
    }
}
