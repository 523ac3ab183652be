using TorchSharp;
using static TorchSharp.torch;

namespace LoraPS.Models;

/// <summary>The losses transformers' model heads compute when given labels.</summary>
public static class Losses
{
    /// <summary>Label value that contributes nothing to the loss (prompt tokens, padding).</summary>
    public const long IgnoreIndex = -100;

    /// <summary>
    /// Mean cross-entropy of token t+1 given tokens ≤ t: <c>logits[:, :-1]</c> against <c>labels[:, 1:]</c>, ignoring
    /// <see cref="IgnoreIndex"/>, computed in fp32. The mean is over the labels that are not ignored.
    /// </summary>
    /// <param name="logits">[B, T, V].</param>
    /// <param name="labels">[B, T] int64 — usually the input ids, with −100 where no loss is wanted. Not pre-shifted.</param>
    public static Tensor CausalLm(Tensor logits, Tensor labels)
    {
        using var scope = NewDisposeScope();
        var t = logits.shape[1];
        var vocab = logits.shape[2];
        var shiftedLogits = logits.narrow(1, 0, t - 1).to(ScalarType.Float32).reshape(-1, vocab);
        var shiftedLabels = labels.to(logits.device).to(ScalarType.Int64).narrow(1, 1, t - 1).reshape(-1);
        return nn.functional.cross_entropy(shiftedLogits, shiftedLabels, ignore_index: IgnoreIndex).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Sequence-classification loss chosen like transformers: <c>problem_type</c> when the config sets it, else
    /// regression (MSE) for one label, single-label cross-entropy for integer labels, multi-label BCE otherwise.
    /// </summary>
    /// <param name="logits">[B, num_labels].</param>
    /// <param name="labels">[B] class ids (int64), or float targets ([B] for regression, [B, num_labels] multi-label).</param>
    /// <param name="config">Supplies <c>problem_type</c>.</param>
    public static Tensor SequenceClassification(Tensor logits, Tensor labels, ModelConfig config)
    {
        using var scope = NewDisposeScope();
        var numLabels = logits.shape[^1];
        labels = labels.to(logits.device);
        var integerLabels = labels.dtype is ScalarType.Int64 or ScalarType.Int32 or ScalarType.Int16 or ScalarType.Int8 or ScalarType.Byte;
        var problem = config.ProblemType ?? (numLabels == 1 ? "regression"
            : integerLabels ? "single_label_classification" : "multi_label_classification");
        var fp32 = logits.to(ScalarType.Float32);
        var loss = problem switch {
            "regression" => numLabels == 1
                ? nn.functional.mse_loss(fp32.squeeze(), labels.to(ScalarType.Float32).squeeze())
                : nn.functional.mse_loss(fp32, labels.to(ScalarType.Float32)),
            "single_label_classification" => nn.functional.cross_entropy(fp32.reshape(-1, numLabels), labels.to(ScalarType.Int64).reshape(-1)),
            "multi_label_classification" => nn.functional.binary_cross_entropy_with_logits(fp32, labels.to(ScalarType.Float32)),
            _ => throw new InvalidOperationException($"problem_type '{problem}' is not one of regression, single_label_classification, multi_label_classification."),
        };
        return loss.MoveToOuterDisposeScope();
    }
}
