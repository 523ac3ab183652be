using System.Text.Json.Nodes;
using LoraPS.NotebookRunner.Documents;
using LoraPS.Notebooks;
using Xunit;

namespace LoraPS.NotebookRunner.Tests;

public class NotebookDocumentTests
{
    [Fact]
    public void Cell_kernels_come_from_magic_then_metadata_then_the_notebook_default()
    {
        var doc = NotebookDocument.Parse(TestNotebooks.Json(
            TestNotebooks.Code("#!csharp\nvar x = 1;", kernel: "pwsh"),
            TestNotebooks.Code("$a = 1", kernel: "pwsh"),
            TestNotebooks.Code("var y = 2;", legacyLanguage: "csharp"),
            TestNotebooks.Code("Get-Date"),
            TestNotebooks.Markdown("# title")));

        Assert.Equal(CellKernel.PowerShell, doc.DefaultKernel);
        var kernels = doc.Cells.Where(c => c.IsCode).Select(c => CellKernel.Resolve(c, doc.DefaultKernel)).ToList();
        Assert.Equal(new[] { "csharp", "pwsh", "csharp", "pwsh" }, kernels.Select(k => k.Kernel));
        Assert.Equal("\nvar x = 1;", kernels[0].Code); // the magic line becomes a blank line: line numbers hold
        Assert.False(doc.Cells[4].IsCode);
    }

    [Fact]
    public void A_csharp_kernelspec_makes_csharp_the_default()
    {
        var json = JsonNode.Parse(TestNotebooks.Json(TestNotebooks.Code("1")))!;
        json["metadata"]!["kernelspec"]!["name"] = ".net-csharp";
        Assert.Equal(CellKernel.CSharp, NotebookDocument.Parse(json.ToJsonString()).DefaultKernel);
    }

    [Fact]
    public void Anything_but_nbformat_4_is_refused_with_the_reason()
    {
        var e = Assert.Throws<FormatException>(() => NotebookDocument.Parse("""{"nbformat": 3, "cells": []}""", "old.ipynb"));
        Assert.Contains("nbformat 4", e.Message);
        Assert.Throws<FormatException>(() => NotebookDocument.Parse("not json", "x.ipynb"));
    }

    [Fact]
    public void Writing_back_keeps_unknown_fields_and_uses_jupyter_layout()
    {
        var json = JsonNode.Parse(TestNotebooks.Json(TestNotebooks.Code("1")))!;
        json["cells"]![0]!["id"] = "abc123";
        json["metadata"]!["custom"] = "kept ü";
        var doc = NotebookDocument.Parse(json.ToJsonString());
        doc.Cells[0].SetResult(1, []);

        string text = doc.ToJson();
        Assert.Contains("\n \"cells\": [", text);      // one-space indentation
        Assert.Contains("\"id\": \"abc123\"", text);
        Assert.Contains("kept ü", text);               // not \u-escaped
        Assert.EndsWith("}\n", text);
        Assert.Equal(1, NotebookDocument.Parse(text).Cells[0].ExecutionCount);
    }

    [Fact]
    public void Stream_text_joins_per_stream_and_is_stored_as_lines()
    {
        var outputs = new CellOutputs();
        outputs.Write("stdout", "a\nb");
        outputs.Write("stdout", "c\n");
        outputs.Write("stderr", "warn\n");
        outputs.Write("stdout", "\x1b[32md\x1b[0m\n");

        var json = outputs.ToJson();
        Assert.Equal(3, json.Count);
        Assert.Equal(new[] { "a\n", "bc\n" }, json[0]["text"]!.AsArray().Select(l => (string)l!));
        Assert.Equal("stderr", (string)json[1]["name"]!);
        Assert.Equal("d\n", (string)json[2]["text"]![0]!); // ANSI colours removed
    }

    [Fact]
    public void An_image_becomes_png_display_data_between_the_texts_around_it()
    {
        var outputs = new CellOutputs();
        outputs.Write("stdout", "before\n");
        var image = LoraPlot.Line("t", "x", "y", [PlotSeries.Steps("s", [1, 2, 3])], width: 200, height: 150);
        outputs.Display(image);
        outputs.Write("stdout", "after\n");

        var json = outputs.ToJson();
        Assert.Equal(new[] { "stream", "display_data", "stream" }, json.Select(o => (string)o["output_type"]!));
        byte[] png = Convert.FromBase64String((string)json[1]["data"]!["image/png"]!);
        Assert.Equal(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G' }, png[..4]);
        Assert.Equal(image.Png, png);
    }

    [Fact]
    public void Plots_are_deterministic_and_check_their_input()
    {
        double[][] grid = [[1, 2], [3, 4]];
        var a = LoraPlot.Heatmap("h", "r", ["4", "8"], "a", ["r", "2r"], grid);
        var b = LoraPlot.Heatmap("h", "r", ["4", "8"], "a", ["r", "2r"], grid);
        Assert.Equal(a.Png, b.Png);
        Assert.Throws<ArgumentException>(() => LoraPlot.Heatmap("h", "r", ["4"], "a", ["r", "2r"], grid));
        Assert.Throws<ArgumentException>(() => LoraPlot.Bars("b", "y", ["a"], [1, 2]));
    }
}
