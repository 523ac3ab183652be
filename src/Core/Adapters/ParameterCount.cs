using TorchSharp;

namespace LoraPS.Adapters;

/// <summary>
/// Trainable and total parameter counts as PEFT's <c>print_trainable_parameters</c> reports them: every distinct
/// parameter of the model counts once (tied weights once), frozen copies and inactive adapters included.
/// </summary>
/// <param name="Trainable">Elements of parameters that require a gradient.</param>
/// <param name="Total">Elements of all parameters.</param>
public readonly record struct ParameterCount(long Trainable, long Total)
{
    /// <summary>100 · trainable / total (0 for an empty model).</summary>
    public double TrainablePercent => Total == 0 ? 0 : 100.0 * Trainable / Total;

    /// <summary>Counts the parameters of <paramref name="module"/>.</summary>
    public static ParameterCount Of(torch.nn.Module module)
    {
        ArgumentNullException.ThrowIfNull(module);
        long trainable = 0, total = 0;
        var seen = new HashSet<IntPtr>();
        foreach (var p in module.parameters())
        {
            // A tied weight is one tensor reachable under two names; PEFT's named_parameters() yields it once.
            if (!seen.Add(p.Handle)) continue;
            total += p.numel();
            if (p.requires_grad) trainable += p.numel();
        }
        // Quantized base weights are not Parameters, but PEFT counts bnb's 4-bit weights by their real element count.
        total += module.modules().OfType<LoraPS.Quantization.QuantizedLinear>().Sum(q => q.Weight.NumElements);
        return new ParameterCount(trainable, total);
    }

    /// <summary>PEFT's line: <c>trainable params: 8,192 || all params: 90,304 || trainable%: 9.0716</c>.</summary>
    public override string ToString() =>
        string.Create(System.Globalization.CultureInfo.InvariantCulture,
            $"trainable params: {Trainable:N0} || all params: {Total:N0} || trainable%: {TrainablePercent:F4}");
}
