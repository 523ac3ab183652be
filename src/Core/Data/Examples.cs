namespace LoraPS.Data;

/// <summary>What a dataset teaches: the three example kinds below.</summary>
public enum DatasetFormat
{
    /// <summary>Decide from the property names of the first record (see <see cref="PropertyMapping"/>).</summary>
    Auto,

    /// <summary>Instruction tuning: instruction, optional input, output (Alpaca).</summary>
    Instruction,

    /// <summary>Plain text for language modelling: every token is a target.</summary>
    Text,

    /// <summary>Text (or a text pair) and a class label, for a sequence-classification head.</summary>
    Classification,
}

/// <summary>One training example, after property mapping and before tokenization.</summary>
public abstract record DatasetExample;

/// <summary>
/// An instruction-tuning example. <paramref name="Input"/> is "" when there is none; the Alpaca template then uses
/// its shorter variant. The model learns to produce <paramref name="Output"/> after the formatted prompt.
/// </summary>
public sealed record InstructionExample(string Instruction, string Input, string Output) : DatasetExample
{
    public InstructionExample(string instruction, string output) : this(instruction, "", output)
    {
    }
}

/// <summary>A document for language modelling.</summary>
public sealed record TextExample(string Text) : DatasetExample;

/// <summary>
/// A classification example: one text, or a text pair (GLUE's sentence1/sentence2, premise/hypothesis), and the
/// class id — an index into the dataset's <see cref="LabelMap"/>.
/// </summary>
public sealed record ClassificationExample(string Text, string? TextPair, int Label) : DatasetExample;
