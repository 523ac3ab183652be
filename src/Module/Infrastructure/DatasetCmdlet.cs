using System.Management.Automation;
using LoraPS.Data;

namespace LoraPS.Module.Infrastructure;

/// <summary>
/// The parameters of the cmdlets that read training records (Import-LoraDataset, Start-LoraFinetune): the data format and
/// which record property holds which field, turned into Core's <see cref="DatasetReadOptions"/> in one place.
/// </summary>
public abstract class DatasetCmdlet : LoraCmdlet
{
    /// <summary>The kind of data in the files or pipeline records: Auto (from the first record's property names), Instruction, Text or Classification.</summary>
    /// <value>Default: Auto.</value>
    [Parameter]
    public DatasetFormat Format { get; set; } = DatasetFormat.Auto;

    /// <summary>The property of the records that holds the instruction (default: instruction, prompt, question or context).</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? PromptProperty { get; set; }

    /// <summary>The property that holds the optional input of an instruction (default: input).</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? InputProperty { get; set; }

    /// <summary>The property that holds the response (default: output, response, completion or answer).</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? ResponseProperty { get; set; }

    /// <summary>The property that holds the text of plain-text or classification data (default: text, or sentence).</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? TextProperty { get; set; }

    /// <summary>The property that holds the class label of classification data (default: label).</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? LabelProperty { get; set; }

    /// <summary>The read options these parameters give; <paramref name="labels"/> fixes the class names of classification data.</summary>
    private protected DatasetReadOptions ReadOptions(LabelMap? labels = null) => new()
    {
        Format = Format,
        Properties = new PropertyMapping
        {
            PromptProperty = PromptProperty,
            InputProperty = InputProperty,
            ResponseProperty = ResponseProperty,
            TextProperty = TextProperty,
            LabelProperty = LabelProperty,
        },
        Labels = labels,
    };
}
