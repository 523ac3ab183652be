using System.Text;
using LoraPS.Data;
using Xunit;

namespace LoraPS.Tests.Data;

/// <summary>The Alpaca template must be LitGPT's text to the byte; the plain style adds nothing.</summary>
public class PromptStyleTests
{
    [Fact]
    public void Alpaca_WithInput_IsLitGptsTextByteForByte()
    {
        string prompt = PromptStyles.Alpaca.Apply(new InstructionExample("Add the numbers.", "2, 3", "5"));
        const string expected =
            "Below is an instruction that describes a task, paired with an input that provides further context. " +
            "Write a response that appropriately completes the request.\n\n" +
            "### Instruction:\nAdd the numbers.\n\n### Input:\n2, 3\n\n### Response:\n";
        Assert.Equal(Encoding.UTF8.GetBytes(expected), Encoding.UTF8.GetBytes(prompt));
        Assert.Equal(225, Encoding.UTF8.GetByteCount(prompt));
    }

    [Fact]
    public void Alpaca_WithoutInput_IsLitGptsTextByteForByte()
    {
        string prompt = PromptStyles.Alpaca.Apply(new InstructionExample("Name a colour.", "Blue"));
        const string expected =
            "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n" +
            "### Instruction:\nName a colour.\n\n### Response:\n";
        Assert.Equal(Encoding.UTF8.GetBytes(expected), Encoding.UTF8.GetBytes(prompt));
        Assert.Equal(154, Encoding.UTF8.GetByteCount(prompt));
    }

    [Fact]
    public void Alpaca_OnlyTheEmptyStringMeansNoInput()
    {
        // Python's `if kwargs.get("input")`: "" is falsy, " " is not.
        Assert.Contains("### Input:\n \n\n", PromptStyles.Alpaca.Apply(new InstructionExample("i", " ", "o")));
        Assert.DoesNotContain("### Input", PromptStyles.Alpaca.Apply(new InstructionExample("i", "", "o")));
    }

    [Fact]
    public void Alpaca_KeepsTextExactly_NoTrimming()
    {
        string prompt = PromptStyles.Alpaca.Apply(new InstructionExample("  padded\n", "é\t", "o"));
        Assert.EndsWith("### Instruction:\n  padded\n\n\n### Input:\né\t\n\n### Response:\n", prompt);
    }

    [Fact]
    public void Plain_IsTheInstruction_ThenANewlineAndTheInput()
    {
        Assert.Equal("\n\nQ: What is 98 plus 45?\n\nA:", PromptStyles.Plain.Apply(new InstructionExample("\n\nQ: What is 98 plus 45?\n\nA:", " 143")));
        Assert.Equal("Translate.\nBonjour", PromptStyles.Plain.Apply(new InstructionExample("Translate.", "Bonjour", "Hello")));
    }

    [Fact]
    public void FromName_IsCaseInsensitive_AndListsKnownNamesOnError()
    {
        Assert.Same(PromptStyles.Alpaca, PromptStyles.FromName("Alpaca"));
        Assert.Same(PromptStyles.Plain, PromptStyles.FromName("plain"));
        Assert.Same(PromptStyles.Plain, PromptStyles.FromName("default"));
        var ex = Assert.Throws<ArgumentException>(() => PromptStyles.FromName("chatml"));
        Assert.Contains("Unknown prompt style 'chatml'. Known styles: alpaca, plain, default.", ex.Message);
    }
}
