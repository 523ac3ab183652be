using LoraPS.Data;
using LoraPS.Models;
using LoraPS.Tokenization;
using TorchSharp;
using static TorchSharp.torch;

namespace LoraPS.Evaluation;

/// <summary>
/// Predicts class ids with a sequence-classification head: examples are tokenized as for fine-tuning (text pairs with
/// the tokenizer's template, truncated longest-first to the model's context), right-padded in batches, and the
/// argmax of the label logits is the prediction.
/// </summary>
public sealed class SequenceClassifier
{
    readonly TransformerModel model;
    readonly ExampleTokenizer tokenizer;
    readonly int batchSize;

    public SequenceClassifier(TransformerModel model, TextTokenizer tokenizer, int batchSize = 16, IProgress<int>? progress = null)
    {
        if (model.HeadKind != ModelHeadKind.SequenceClassification)
            throw new InvalidOperationException($"Classification needs a sequence-classification model; this {model.Config.ModelType} model has a {model.HeadKind} head.");
        this.model = model;
        int max = model.Config.MaxPositionEmbeddings > 0 ? model.Config.MaxPositionEmbeddings : 512;
        this.tokenizer = new ExampleTokenizer(tokenizer, new TokenizationOptions { MaxSeqLength = max });
        this.batchSize = Math.Max(1, batchSize);
        Progress = progress;
    }

    public IProgress<int>? Progress { get; }

    /// <summary>Examples cut to fit the model's context so far.</summary>
    public int TruncatedExamples { get; private set; }

    /// <summary>The predicted class of each example, in order; cancelling returns a prefix.</summary>
    public IReadOnlyList<int> Predict(IReadOnlyList<ClassificationExample> examples, CancellationToken cancellationToken = default)
    {
        var predictions = new List<int>(examples.Count);
        using var noGrad = no_grad();
        bool wasTraining = model.training;
        model.eval();
        try
        {
            var collate = new CollateOptions { PadId = model.Config.PadTokenId ?? 0, Device = model.Device };
            for (int start = 0; start < examples.Count; start += batchSize)
            {
                if (cancellationToken.IsCancellationRequested) break;
                var tokenized = examples.Skip(start).Take(batchSize).Select(tokenizer.Tokenize).ToList();
                TruncatedExamples += tokenized.Count(t => t.Truncated);
                using var scope = NewDisposeScope();
                using var batch = BatchCollator.Collate(tokenized, collate);
                using var output = model.Forward(batch.InputIds, batch.AttentionMask, tokenTypeIds: batch.TokenTypeIds);
                predictions.AddRange(output.Logits!.argmax(-1).cpu().data<long>().ToArray().Select(p => (int)p));
                Progress?.Report(predictions.Count);
            }
        }
        finally
        {
            if (wasTraining) model.train();
        }
        return predictions;
    }
}
