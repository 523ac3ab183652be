using LoraPS.Data;
using Xunit;
using static TorchSharp.torch;

namespace LoraPS.Tests.Data;

/// <summary>Collation into right-padded int64 tensors: shapes, pad id, −100 labels, attention mask, classification.</summary>
public class BatchCollatorTests
{
    private static long[] Row(Tensor t, int row) => t[row].data<long>().ToArray();

    [Fact]
    public void LanguageModelling_PadsInputsWithPadId_LabelsWithMinus100()
    {
        using var scope = NewDisposeScope();
        var a = new TokenizedExample([1, 10, 11, 12, 2], [-100, -100, 11, 12, 2], 2);
        var b = new TokenizedExample([1, 20, 2], [1, 20, 2], 1);
        using TrainingBatch batch = BatchCollator.Collate([a, b]);

        Assert.Equal([2L, 5L], batch.InputIds.shape);
        Assert.Equal([2L, 5L], batch.Labels.shape);
        Assert.Equal([2L, 5L], batch.AttentionMask.shape);
        Assert.Equal(ScalarType.Int64, batch.InputIds.dtype);
        Assert.Equal(ScalarType.Int64, batch.Labels.dtype);
        Assert.Equal(ScalarType.Int64, batch.AttentionMask.dtype);
        Assert.Null(batch.TokenTypeIds);

        Assert.Equal([1L, 10, 11, 12, 2], Row(batch.InputIds, 0));
        Assert.Equal([1L, 20, 2, 0, 0], Row(batch.InputIds, 1));
        Assert.Equal([-100L, -100, 11, 12, 2], Row(batch.Labels, 0));
        Assert.Equal([1L, 20, 2, -100, -100], Row(batch.Labels, 1));
        Assert.Equal([1L, 1, 1, 0, 0], Row(batch.AttentionMask, 1));

        Assert.Equal(new PaddingStats(8, 2), batch.Padding);
        Assert.Equal(5, batch.LabelTokens);   // row 0: 11, 12, 2; row 1: 20, 2 (position 0 is never predicted)
        Assert.Equal((2, 5), (batch.BatchSize, batch.SequenceLength));
    }

    [Fact]
    public void Options_PadIdIgnoreIndexAndMultiple()
    {
        var a = new TokenizedExample([5, 6, 7], [5, 6, 7], 0);
        using TrainingBatch batch = BatchCollator.Collate([a], new CollateOptions { PadId = 2, IgnoreIndex = -1, PadToMultipleOf = 8 });
        Assert.Equal([1L, 8L], batch.InputIds.shape);
        Assert.Equal([5L, 6, 7, 2, 2, 2, 2, 2], Row(batch.InputIds, 0));
        Assert.Equal([5L, 6, 7, -1, -1, -1, -1, -1], Row(batch.Labels, 0));
        Assert.Equal(5.0 / 8, batch.Padding.PaddingFraction);
    }

    [Fact]
    public void Classification_LabelsAreClassIds_WithTokenTypes()
    {
        var a = new TokenizedExample([101, 7, 102, 8, 102], [], 5) { ClassLabel = 1, TokenTypeIds = [0, 0, 0, 1, 1] };
        var b = new TokenizedExample([101, 9, 102], [], 3) { ClassLabel = 0, TokenTypeIds = [0, 0, 0] };
        using TrainingBatch batch = BatchCollator.Collate([a, b], new CollateOptions { PadId = 0 });
        Assert.Equal([2L], batch.Labels.shape);
        Assert.Equal([1L, 0], batch.Labels.data<long>().ToArray());
        Assert.Equal([0L, 0, 0, 1, 1], Row(batch.TokenTypeIds!, 0));
        Assert.Equal([0L, 0, 0, 0, 0], Row(batch.TokenTypeIds!, 1));
        Assert.Equal([101L, 9, 102, 0, 0], Row(batch.InputIds, 1));
        Assert.Equal([1L, 1, 1, 0, 0], Row(batch.AttentionMask, 1));
        Assert.Equal(2, batch.LabelTokens);
    }

    [Fact]
    public void TokenizedAlpacaBatch_MatchesTheExamples()
    {
        var tokenizer = new ExampleTokenizer(LoraPS.Tokenization.TextTokenizer.Load(LoraPS.Tests.Tokenization.TokenizerFixtures.Stories260K), new TokenizationOptions { MaskPrompt = true });
        TokenizedDataset data = tokenizer.TokenizeAll(DatasetReader.ReadFile(DataFixtures.AlpacaSubset).Examples.Take(16));
        var sampler = new BatchSampler(data.Lengths, 4, 42);
        foreach (int[] indices in sampler.Epoch(0))
        {
            using TrainingBatch batch = BatchCollator.Collate(indices.Select(i => data[i]).ToList());
            Assert.Equal(indices.Max(i => data[i].Length), batch.SequenceLength);
            for (int row = 0; row < indices.Length; row++)
            {
                TokenizedExample e = data[indices[row]];
                Assert.Equal(e.InputIds, Row(batch.InputIds, row).Take(e.Length));
                Assert.Equal(e.Labels, Row(batch.Labels, row).Take(e.Length));
                Assert.All(Row(batch.Labels, row).Skip(e.Length), l => Assert.Equal(-100, l));
                Assert.Equal(e.Length, Row(batch.AttentionMask, row).Sum());
            }
        }
    }

    [Fact]
    public void InvalidBatches()
    {
        Assert.Throws<ArgumentException>(() => BatchCollator.Collate([]));
        var lm = new TokenizedExample([1], [1], 0);
        var cls = new TokenizedExample([1], [], 1) { ClassLabel = 0 };
        Assert.Contains("cannot mix", Assert.Throws<ArgumentException>(() => BatchCollator.Collate([lm, cls])).Message);
    }
}
