namespace LoraPS.Training;

/// <summary>The shape of the learning rate over a run.</summary>
public enum ScheduleKind
{
    /// <summary>
    /// LitGPT's <c>finetune_lora</c> schedule: linear warmup from 0, then cosine annealing to the minimum
    /// (<c>SequentialLR(LambdaLR(step/warmup), CosineAnnealingLR(T_max = max_steps − warmup))</c>).
    /// </summary>
    CosineWithWarmup,

    /// <summary>Linear warmup, then linear decay to the minimum at the last step (transformers' "linear").</summary>
    Linear,

    /// <summary>Linear warmup, then constant (QLoRA's recipe uses constant after warmup).</summary>
    Constant,
}

/// <summary>
/// The learning rate of every optimizer step as a pure function of the step, so a resumed run needs to save nothing
/// but the step count.
/// </summary>
/// <remarks>
/// <para>
/// Steps are counted from 0: step s is the (s+1)-th optimizer update. During warmup the rate is
/// <c>peak·s/warmup</c>, so the very first update runs at rate 0 — exactly what LitGPT's <c>LambdaLR(step/warmup)</c>
/// and transformers' warmup schedules do (Adam's moments still take in that first gradient).
/// </para>
/// <para>
/// The cosine decays to <see cref="MinLearningRate"/>, which defaults to 0: LitGPT's fine-tuning scripts use
/// <c>CosineAnnealingLR</c> with its default <c>eta_min = 0</c> (TrainArgs.min_lr = 6e-5 is only used by pretraining).
/// Past the last step the rate stays at the minimum instead of rising again as torch's periodic cosine would.
/// Warmup longer than the run is cut to the run's length.
/// </para>
/// </remarks>
public sealed record LearningRateSchedule
{
    public ScheduleKind Kind { get; init; } = ScheduleKind.CosineWithWarmup;

    /// <summary>Steps of linear warmup from 0 (LitGPT's <c>lr_warmup_steps</c>, default 100).</summary>
    public int WarmupSteps { get; init; } = 100;

    /// <summary>The rate the decay ends at (cosine and linear); 0 as in LitGPT's fine-tuning.</summary>
    public double MinLearningRate { get; init; }

    /// <summary>The learning rate of step <paramref name="step"/> (0-based) of a run of <paramref name="maxSteps"/> steps.</summary>
    /// <param name="step">Optimizer updates done before this one.</param>
    /// <param name="maxSteps">Total optimizer updates in the run.</param>
    /// <param name="peak">The optimizer's configured learning rate.</param>
    public double At(long step, long maxSteps, double peak)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(step);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxSteps, 1);
        if (WarmupSteps < 0) throw new ArgumentOutOfRangeException(nameof(WarmupSteps), WarmupSteps, "Warmup steps must be ≥ 0.");
        long warmup = Math.Min(WarmupSteps, maxSteps);
        if (step < warmup) return peak * step / warmup;
        long decaySteps = maxSteps - warmup;
        double progress = decaySteps == 0 ? 1.0 : Math.Min(1.0, (double)(step - warmup) / decaySteps);
        return Kind switch
        {
            ScheduleKind.CosineWithWarmup => MinLearningRate + (peak - MinLearningRate) * (1 + Math.Cos(Math.PI * progress)) / 2,
            ScheduleKind.Linear => MinLearningRate + (peak - MinLearningRate) * (1 - progress),
            ScheduleKind.Constant => peak,
            _ => throw new ArgumentOutOfRangeException(nameof(Kind), Kind, "Use CosineWithWarmup, Linear or Constant."),
        };
    }
}
