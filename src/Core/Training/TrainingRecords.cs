namespace LoraPS.Training;

/// <summary>Why a run stopped.</summary>
public enum StopReason
{
    /// <summary>It ran every step (MaxSteps, or all epochs).</summary>
    Completed,
    /// <summary>MaxTime passed.</summary>
    MaxTime,
    /// <summary>The cancellation token fired; a checkpoint was saved and the run can be resumed.</summary>
    Cancelled,
}

/// <summary>One evaluation on the validation set.</summary>
/// <param name="Loss">Mean loss over every validation label token (every example, for classification).</param>
/// <param name="Perplexity">exp(Loss).</param>
/// <param name="Accuracy">Classification only: the share of examples whose arg-max logit is the label.</param>
/// <param name="Examples">Examples evaluated.</param>
/// <param name="Tokens">Label tokens (examples, for classification) the loss is averaged over.</param>
public sealed record ValidationMetrics(double Loss, double Perplexity, double? Accuracy, int Examples, long Tokens);

/// <summary>Reported after every optimizer step, synchronously on the training thread.</summary>
/// <param name="Step">Steps done.</param>
/// <param name="MaxSteps">Steps in the run.</param>
/// <param name="Epoch">Passes over the training data so far (fractional).</param>
/// <param name="Loss">This step's training loss (mean over its micro-batches).</param>
/// <param name="LearningRate">The rate this step used.</param>
/// <param name="GradNorm">The global gradient norm before clipping.</param>
/// <param name="Tokens">Real (unpadded) tokens seen so far.</param>
/// <param name="TokensPerSecond">Tokens / Elapsed.</param>
/// <param name="Elapsed">Training time so far (resumed runs include the time before the interruption).</param>
/// <param name="Remaining">Estimated time to the last step at the rate of this session.</param>
/// <param name="Validation">Set on steps that evaluated.</param>
public sealed record TrainingProgress(long Step, long MaxSteps, double Epoch, double Loss, double LearningRate, double GradNorm,
    long Tokens, double TokensPerSecond, TimeSpan Elapsed, TimeSpan? Remaining, ValidationMetrics? Validation)
{
    public double PercentComplete => 100.0 * Step / MaxSteps;
}

/// <summary>What a run did and where it put it.</summary>
/// <param name="StopReason">Completed, MaxTime or Cancelled.</param>
/// <param name="Steps">Optimizer steps done (in all sessions of the run).</param>
/// <param name="MaxSteps">Steps the run was set to do.</param>
/// <param name="Epochs">Passes over the training data (fractional).</param>
/// <param name="Tokens">Real training tokens seen.</param>
/// <param name="WallTime">Training time, resumed sessions included.</param>
/// <param name="TokensPerSecond">Tokens / WallTime.</param>
/// <param name="FinalTrainLoss">The last step's loss.</param>
/// <param name="BestTrainLoss">The lowest step loss.</param>
/// <param name="FinalValidationLoss">The last evaluation's loss; null when none ran.</param>
/// <param name="BestValidationLoss">The lowest evaluation loss.</param>
/// <param name="FinalValidation">The last evaluation.</param>
/// <param name="PeakMemoryBytes">The process's peak resident memory (VmHWM on Linux) — process-wide, not just this run.</param>
/// <param name="TrainableParameters">Parameters the optimizer updated.</param>
/// <param name="TotalParameters">All parameters of the model.</param>
/// <param name="AdapterPath">The PEFT adapter folder: final/ when the run ended normally, the last checkpoint's when cancelled.</param>
/// <param name="RunFolder">The run folder.</param>
/// <param name="LastCheckpoint">The newest checkpoint folder, if any.</param>
public sealed record TrainingResult(StopReason StopReason, long Steps, long MaxSteps, double Epochs, long Tokens, TimeSpan WallTime,
    double TokensPerSecond, double? FinalTrainLoss, double? BestTrainLoss, double? FinalValidationLoss, double? BestValidationLoss,
    ValidationMetrics? FinalValidation, long PeakMemoryBytes, long TrainableParameters, long TotalParameters, string AdapterPath,
    string RunFolder, string? LastCheckpoint)
{
    /// <summary>The evaluation before the first step, when <see cref="TrainingOptions.InitialValidation"/> asked for it.</summary>
    public ValidationMetrics? InitialValidation { get; init; }

    /// <summary>Training examples cut to the maximum sequence length.</summary>
    public int TruncatedExamples { get; init; }
}

/// <summary>
/// The loss or the gradient norm became NaN or infinite. The step that produced it was not applied, so the adapter in
/// memory and every checkpoint already written are the last good state.
/// </summary>
public sealed class TrainingDivergedException : Exception
{
    public TrainingDivergedException(long step, string quantity, double value, string? lastCheckpoint)
        : base($"Training diverged at step {step}: the {quantity} is {value}. The step was not applied. " +
            (lastCheckpoint is null ? "No checkpoint was written yet. " : $"The last good checkpoint is '{lastCheckpoint}'. ") +
            "Lower the learning rate, set MaxGradNorm to clip gradients, or train in FP32 instead of BF16.")
    {
        Step = step;
        Quantity = quantity;
        Value = value;
        LastCheckpoint = lastCheckpoint;
    }

    public TrainingDivergedException() : this(0, "loss", double.NaN, null) { }

    public TrainingDivergedException(string message) : base(message) { }

    public TrainingDivergedException(string message, Exception innerException) : base(message, innerException) { }

    /// <summary>The step (1-based) whose loss or gradients were not finite.</summary>
    public long Step { get; }

    /// <summary>"loss" or "gradient norm".</summary>
    public string Quantity { get; } = "loss";

    public double Value { get; }

    /// <summary>The newest checkpoint folder written before, or null.</summary>
    public string? LastCheckpoint { get; }
}
